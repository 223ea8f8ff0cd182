//! invigil's integration tests, in one test binary.

mod objects;
