//! `ems-api`: every way the outside talks to the EMS. **Not implemented yet** (issue #6); this
//! crate holds no code so that nothing can depend on behaviour that does not exist. See
//! `README.md` for the module plan.
#![forbid(unsafe_code)]
