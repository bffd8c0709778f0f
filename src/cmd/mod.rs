//! One module per subcommand.

pub mod acceptance;
pub mod bench;
pub mod chat;
pub mod generate;
pub mod history;
pub mod models;
pub mod plan;
pub mod profile;
pub mod rpc_server;
pub mod serve;
pub mod simulate;
pub mod worker;
