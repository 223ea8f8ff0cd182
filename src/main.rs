fn main() -> std::process::ExitCode {
    invigil::cli::main()
}
