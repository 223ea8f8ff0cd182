//! `invigil bench …`: each benchmark runs invigil and a peer side by side
//! and prints the figures and ratios the README's performance table shows.

use super::{
    EXIT_BAD_CONFIG, bench_all, bench_append, bench_crash, bench_hostile, bench_load,
    bench_recognize, bench_static, block_on, cpus, hub_bench, ingest,
};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub(super) enum Bench {
    /// coturn's turnserver and invigil's relay under the same
    /// turnutils_uclient load, on loopback.
    Turn {
        /// Message sizes in bytes.
        #[arg(long, value_delimiter = ',', default_value = "100,1200")]
        sizes: Vec<usize>,
        /// Concurrent clients.
        #[arg(long, value_delimiter = ',', default_value = "10,50")]
        clients: Vec<usize>,
        /// Messages per client.
        #[arg(long, default_value_t = 500)]
        messages: usize,
        /// Milliseconds between a client's messages.
        #[arg(long, default_value_t = 1)]
        gap_ms: u32,
        /// `udp`, `tcp` or both.
        #[arg(long, value_delimiter = ',', default_value = "udp,tcp")]
        transports: Vec<String>,
    },
    /// The live hub over TLS WebSockets: students sending samples and chat,
    /// proctors watching walls; messages/s, fan-out latency, server RSS.
    Hub {
        /// Students, each in their own started session.
        #[arg(long, default_value_t = 300)]
        students: usize,
        /// Sessions on one proctor's wall (1 to 30); proctors = students ÷ wall.
        #[arg(long, default_value_t = 30)]
        wall: usize,
        /// Seconds of load after everyone joined.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// A student chats on average every this many seconds.
        #[arg(long, default_value_t = 20)]
        chat_every: u64,
    },
    /// Recording ingest over TLS with durable acknowledgements against
    /// `dd oflag=dsync` writing the same bytes to the same disk.
    Ingest {
        /// Megabytes per run.
        #[arg(long, default_value_t = 64)]
        mb: u64,
        /// Chunk (and dd block) size in KiB.
        #[arg(long, default_value_t = 1024)]
        chunk_kb: u64,
        /// Concurrent uploads (and dd processes).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        parallel: Vec<usize>,
        /// Directory on the disk to measure (default: the current one).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Detect + align + embed per 640×480 frame built from the given photos
    /// and per full photo, on tract and ONNX Runtime, against dlib's
    /// face_recognition (installed into a cached venv on first use).
    Recognize {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Frames to time.
        #[arg(long, default_value_t = 200)]
        frames: usize,
        /// Worker threads for the throughput run (default: THREADS or the CPUs).
        #[arg(long, env = "THREADS")]
        threads: Option<usize>,
        /// Labelled faces, one folder per person, for ROC AUC on every pair.
        #[arg(long, value_name = "DIR")]
        labelled: Option<PathBuf>,
        /// The peer's virtual environment (default ~/.cache/invigil/bench-venv).
        #[arg(long, value_name = "DIR")]
        venv: Option<PathBuf>,
        /// Only invigil's engines, without dlib.
        #[arg(long)]
        no_dlib: bool,
    },
    /// Hostile clients against `invigil serve`: slowloris sockets, pixel
    /// and decompression bombs, a WebSocket flood, oversized headers and
    /// bodies; prints what the server held.
    Hostile {
        /// Slowloris sockets held open at once.
        #[arg(long, default_value_t = 2000)]
        sockets: usize,
        /// Seconds the slowloris sockets are held once all are open.
        #[arg(long, default_value_t = 20)]
        hold_secs: u64,
        /// Seconds of WebSocket flood.
        #[arg(long, default_value_t = 10)]
        flood_secs: u64,
    },
    /// An exam day on one box: students arriving as at 09:00 sign in by
    /// JWT link, send samples, chat, snapshots and a recording over tus;
    /// proctors watch walls; latency per operation, errors, and a check
    /// that everything acknowledged is there.
    Load {
        #[command(flatten)]
        students: Students,
        /// Seconds over which the students arrive.
        #[arg(long, default_value_t = 60)]
        ramp_secs: u64,
        /// Seconds of exam after the last arrival.
        #[arg(long, default_value_t = 120)]
        secs: u64,
        /// Sessions on one proctor's wall (0 to 30; 0: no proctors).
        #[arg(long, default_value_t = 30)]
        wall: usize,
    },
    /// The same students while the server is killed with SIGKILL at random
    /// moments and restarted; then every acknowledgement and every evidence
    /// chain is checked.
    Crash {
        #[command(flatten)]
        students: Students,
        /// Kills.
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Least and most milliseconds of running between two kills.
        #[arg(long, value_delimiter = ',', default_value = "500,3000")]
        between_ms: Vec<u64>,
    },
    /// Every benchmark of the performance table in one go, each against its
    /// peer, with a summary of their headline figures at the end (run from
    /// a source checkout: recognition reads tests/data/faces).
    All {
        /// Smaller sizes (100 students, 10 kills, fewer frames): minutes
        /// instead of a quarter of an hour.
        #[arg(long)]
        quick: bool,
    },
    /// The web interface's files and an API read, invigil against nginx
    /// serving the same bytes with the same certificate; requests/s, p50,
    /// p99, CPU seconds and ratios.
    Static {
        /// Seconds of load per target and server.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Kept-alive HTTPS/1.1 connections, one request in flight on each.
        #[arg(long, default_value_t = 32)]
        connections: usize,
    },
    /// Durable protocol appends per second, invigil (redb) against
    /// PostgreSQL (one INSERT per entry, synchronous_commit=on).
    Append {
        /// Entries to append on each side.
        #[arg(long, default_value_t = 2000)]
        entries: usize,
    },
}

/// What each simulated student sends.
#[derive(Debug, clap::Args)]
pub(super) struct Students {
    /// Simulated students, each in their own session (default: 1000 for
    /// `load`, 50 for `crash`).
    #[arg(long)]
    students: Option<usize>,
    /// Seconds between a student's metric samples (the template's period).
    #[arg(long, default_value_t = 10)]
    period: u64,
    /// Seconds between a student's snapshots (a 640×480 JPEG of 20–50 KB).
    #[arg(long, default_value_t = 5)]
    snapshot_every: u64,
    /// Seconds of recording per chunk.
    #[arg(long, default_value_t = 5)]
    chunk_every: u64,
    /// Recording bit rate per student, kbit/s.
    #[arg(long, default_value_t = 320)]
    kbit: u64,
    /// A student chats on average once in this many samples.
    #[arg(long, default_value_t = 6)]
    chat_every: u64,
}

impl Students {
    fn plan(&self, students: usize, wall: usize, ramp_secs: u64, secs: u64) -> bench_load::Plan {
        bench_load::Plan {
            students: self.students.unwrap_or(students),
            wall,
            ramp: Duration::from_secs(ramp_secs),
            hold: Duration::from_secs(secs),
            period: Duration::from_secs(self.period),
            snapshot_every: Duration::from_secs(self.snapshot_every),
            chunk_every: Duration::from_secs(self.chunk_every),
            bytes_per_sec: self.kbit * 1000 / 8,
            chat_every: self.chat_every,
        }
    }
}

/// 0 when the benchmark reached its goal, 1 when it did not or failed.
fn verdict(what: &str, result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("invigil: bench {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn run(what: Bench) -> ExitCode {
    match what {
        Bench::Turn {
            sizes,
            clients,
            messages,
            gap_ms,
            transports,
        } => {
            let mut ts = Vec::new();
            for t in transports {
                match t.as_str() {
                    "udp" => ts.push(crate::turn::bench::Transport::Udp),
                    "tcp" => ts.push(crate::turn::bench::Transport::Tcp),
                    other => {
                        eprintln!("invigil: unknown transport {other:?} (udp or tcp)");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                }
            }
            let options = crate::turn::bench::Options {
                sizes,
                clients,
                messages,
                gap_ms,
                transports: ts,
            };
            block_on(async move {
                crate::turn::bench::run(&options, &mut std::io::stdout())
                    .await
                    .map(|_| ())
            })
        }
        Bench::Recognize {
            files,
            frames,
            threads,
            labelled,
            venv,
            no_dlib,
        } => {
            let options = bench_recognize::Options {
                photos: files,
                iterations: frames,
                threads: threads.unwrap_or_else(cpus),
                labelled,
                venv: (!no_dlib).then(|| venv.unwrap_or_else(bench_recognize::default_venv)),
            };
            match bench_recognize::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("invigil: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Bench::Hub {
            students,
            wall,
            secs,
            chat_every,
        } => {
            let options = hub_bench::Options {
                students,
                wall,
                secs,
                chat_every,
            };
            match hub_bench::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("invigil: bench hub: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Bench::Ingest {
            mb,
            chunk_kb,
            parallel,
            dir,
        } => ingest::run(ingest::Options {
            mb,
            chunk_kb,
            parallel,
            dir,
        }),
        Bench::Hostile {
            sockets,
            hold_secs,
            flood_secs,
        } => match bench_hostile::run(&bench_hostile::Options {
            sockets,
            hold_secs,
            flood_secs,
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("invigil: bench hostile: {e:#}");
                ExitCode::FAILURE
            }
        },
        Bench::Append { entries } => bench_append::run(entries),
        Bench::Load {
            students,
            ramp_secs,
            secs,
            wall,
        } => verdict(
            "load",
            bench_load::run(&students.plan(1000, wall, ramp_secs, secs)),
        ),
        Bench::Crash {
            students,
            rounds,
            between_ms,
        } => {
            let (lo, hi) = match between_ms[..] {
                [lo, hi] if lo <= hi => (lo, hi),
                _ => {
                    eprintln!("invigil: --between-ms takes two numbers, least and most");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            let options = bench_crash::Options {
                // The kills decide how long it runs; students arrive in 2 s.
                plan: students.plan(50, 0, 2, 0),
                rounds,
                between: (Duration::from_millis(lo), Duration::from_millis(hi)),
            };
            verdict("crash", bench_crash::run(&options))
        }
        Bench::All { quick } => bench_all::run(quick),
        Bench::Static { secs, connections } => {
            match bench_static::run(&bench_static::Options { secs, connections }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("invigil: bench static: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
