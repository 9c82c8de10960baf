//! The bundled example plugins (WAT, built into the program): what
//! `custody serve` serves with no configuration, so a fresh clone answers
//! without a toolchain. `/hello` writes a greeting; `/echo/...` writes its
//! CGI environment and echoes the request body.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{ConfigError, ServerConfig};

/// The WAGI hello world.
pub const HELLO_WAT: &str = include_str!("../plugins/hello.wat");
/// The WAGI echo: its environment, `--- body ---`, the body.
pub const ECHO_WAT: &str = include_str!("../plugins/echo.wat");

/// The configuration of the bundled examples, served on `listen`.
///
/// # Errors
/// None in practice (the configuration is fixed); a [`ConfigError`] would
/// name `<built-in>`.
pub fn example_config(listen: SocketAddr) -> Result<ServerConfig, ConfigError> {
    let file = PathBuf::from("<built-in>");
    let text = r#"
        [[plugin]]
        name = "hello"
        route = "/hello"
        module = "hello.wat"

        [[plugin]]
        name = "echo"
        route = "/echo/..."
        module = "echo.wat"
        env = { GREETING = "hi" }
    "#;
    let mut config = ServerConfig::from_toml(text, &file, std::path::Path::new(""))?;
    config.listen = listen;
    for (plugin, wat) in config.plugins.iter_mut().zip([HELLO_WAT, ECHO_WAT]) {
        plugin.embedded = Some(wat.as_bytes());
    }
    Ok(config)
}
