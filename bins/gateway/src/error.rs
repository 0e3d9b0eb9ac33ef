//! Why the gateway could not run: the error shared by the loop (`live`), the API wiring
//! (`api`) and the site starters.

use crate::store::StoreError;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LiveError {
    /// A command-line value is invalid.
    // Only the simulated site's options are validated here (a production build has none).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    #[error("{flag} = {value}: {why}")]
    Arg {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// The state file.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The simulated site.
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    #[error("simulated site: {0}")]
    Site(String),
    /// The controller.
    #[error("controller: {0}")]
    Controller(#[from] ems_control::ConfigError),
    /// The device layer.
    #[error("device layer: {0}")]
    Devices(String),
    /// The runtime.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// A configuration file (`--economics FILE`).
    #[cfg_attr(not(feature = "sim"), allow(dead_code))]
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// Live economics could not start.
    #[error("economics: {0}")]
    Economics(String),
    /// A shutdown was requested before the devices were reached.
    #[error("stopped before the devices were reached: {0}")]
    NeverConnected(String),
}
