//! Resource limits the app gets from its caller (`ulimit`), applied after the identity switch:
//! each is lowered to the caller's value, never raised (what the helper has, the daemon's
//! limits, is the ceiling), so a client can only limit itself.

use serde::{Deserialize, Serialize};

use crate::error::{Step, StepError};

/// A resource, by the name `prlimit(1)` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl Resource {
    pub const ALL: [Resource; 16] = [
        Resource::As,
        Resource::Core,
        Resource::Cpu,
        Resource::Data,
        Resource::Fsize,
        Resource::Locks,
        Resource::Memlock,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Nofile,
        Resource::Nproc,
        Resource::Rss,
        Resource::Rtprio,
        Resource::Rttime,
        Resource::Sigpending,
        Resource::Stack,
    ];

    /// Its name (`nofile`).
    pub fn name(self) -> &'static str {
        match self {
            Resource::As => "as",
            Resource::Core => "core",
            Resource::Cpu => "cpu",
            Resource::Data => "data",
            Resource::Fsize => "fsize",
            Resource::Locks => "locks",
            Resource::Memlock => "memlock",
            Resource::Msgqueue => "msgqueue",
            Resource::Nice => "nice",
            Resource::Nofile => "nofile",
            Resource::Nproc => "nproc",
            Resource::Rss => "rss",
            Resource::Rtprio => "rtprio",
            Resource::Rttime => "rttime",
            Resource::Sigpending => "sigpending",
            Resource::Stack => "stack",
        }
    }

    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }

    fn raw(self) -> libc::__rlimit_resource_t {
        (match self {
            Resource::As => libc::RLIMIT_AS,
            Resource::Core => libc::RLIMIT_CORE,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Fsize => libc::RLIMIT_FSIZE,
            Resource::Locks => libc::RLIMIT_LOCKS,
            Resource::Memlock => libc::RLIMIT_MEMLOCK,
            Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
            Resource::Nice => libc::RLIMIT_NICE,
            Resource::Nofile => libc::RLIMIT_NOFILE,
            Resource::Nproc => libc::RLIMIT_NPROC,
            Resource::Rss => libc::RLIMIT_RSS,
            Resource::Rtprio => libc::RLIMIT_RTPRIO,
            Resource::Rttime => libc::RLIMIT_RTTIME,
            Resource::Sigpending => libc::RLIMIT_SIGPENDING,
            Resource::Stack => libc::RLIMIT_STACK,
        }) as libc::__rlimit_resource_t
    }
}

/// One limit: `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

fn raw(v: Option<u64>) -> libc::rlim_t {
    v.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t)
}

/// The lower of two limits (`RLIM_INFINITY` is the highest).
fn lower(a: libc::rlim_t, b: libc::rlim_t) -> libc::rlim_t {
    a.min(b)
}

/// Lowers each limit to `wanted`'s (never raising one).
pub fn apply(wanted: &[Rlimit]) -> Result<(), StepError> {
    for w in wanted {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit into a struct we own.
        if unsafe { libc::getrlimit(w.resource.raw(), &mut cur) } != 0 {
            return Err(StepError::io(
                Step::Rlimits,
                std::io::Error::last_os_error(),
            ));
        }
        let hard = lower(cur.rlim_max, raw(w.hard));
        let soft = lower(lower(cur.rlim_cur, raw(w.soft)), hard);
        if (soft, hard) == (cur.rlim_cur, cur.rlim_max) {
            continue;
        }
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit with a struct we own; lowering needs no privilege.
        if unsafe { libc::setrlimit(w.resource.raw(), &new) } != 0 {
            return Err(StepError::io(
                Step::Rlimits,
                std::io::Error::other(format!(
                    "{}: {}",
                    w.resource.name(),
                    std::io::Error::last_os_error()
                )),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lower_never_raises() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_name(r.name()), Some(r));
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::String(r.name().into())
            );
        }
        assert_eq!(Resource::from_name("files"), None);
        assert_eq!(lower(10, libc::RLIM_INFINITY), 10);
        assert_eq!(lower(libc::RLIM_INFINITY, 5), 5);
    }
}
