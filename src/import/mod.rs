//! Moving from coturn (issue 17): its config file
//! ([`coturn_config`]) and its user database ([`coturn_db`]).

pub mod coturn_config;
pub mod coturn_db;
