//! `pack-confine`: the sandbox helper packd spawns for every app, hook and service.
//! Not meant to be run by hand; see the `confine` crate for the protocol.

fn main() {
    std::process::exit(confine::helper::main());
}
