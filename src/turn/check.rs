//! `invigil turn-check`: two allocations on a TURN server, a message relayed
//! from one to the other and back, candidates and round-trip time printed.
