//! The store manager: remotes, the assertions they sent, downloads verified before anything
//! is installed, refresh by hand and on a timer.

pub mod timer;
