//! `pack-confine`: the sandbox helper packd runs for every app, hook and service. Not meant to
//! be run by hand; see the `confine` crate for the protocol.
//!
//! - `pack-confine --zygote PARENT_PID`, with the launch socket on fd 3: the zygote
//!   (`confine::zygote`), started by packd;
//! - `pack-confine --monitor FILE`: a service's monitor (`confine::monitor`), started by
//!   systemd as a transient unit when packd delegates its services to it.

use std::os::fd::FromRawFd;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.as_slice() {
        [_, flag, pid] if flag == "--zygote" => match pid.parse::<i32>() {
            Ok(parent) => {
                // SAFETY: fd 3 is the launch socket by the protocol; if it is not open, the
                // first receive fails and the zygote exits.
                let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(confine::proto::SOCKET_FD) };
                confine::zygote::serve(sock, parent)
            }
            Err(_) => usage(),
        },
        [_, flag, file] if flag == "--monitor" => {
            confine::monitor::main_from_file(std::path::Path::new(file))
        }
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!(
        "pack-confine is started by packd (pack-confine --zygote PARENT_PID) or, for a \
         service, by systemd on packd's behalf (pack-confine --monitor FILE); it is not run by hand"
    );
    2
}
