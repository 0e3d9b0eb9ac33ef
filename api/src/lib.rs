//! `ems-api`: every way the outside talks to the EMS (issue #6, in progress). The only crate that
//! knows HTTP, and the one whose JSON is a wire format other programs rely on. See `README.md` for the module plan and what exists.
#![forbid(unsafe_code)]

pub mod audit_queue;
pub mod auth;
pub mod cloud;
pub mod control_modes;
pub mod dashboard;
pub mod db;
pub mod economics;
mod economics_routes;
pub mod error;
pub mod graphql;
pub mod grid_services;
mod grid_services_routes;
pub mod input;
pub mod island;
mod island_routes;
pub mod metrics;
pub mod modbus_server;
pub mod model;
pub mod mqtt;
pub mod ports;
pub mod rest;
pub mod schedules;
mod schema;
pub mod server;
pub mod site_mode;
pub mod start;
pub mod state;
pub mod telemetry_buffer;
pub mod ws;
