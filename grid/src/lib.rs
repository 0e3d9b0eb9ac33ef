//! `ems-grid`: layer 6, grid services. **Not implemented yet**; this crate holds no code so
//! that nothing can depend on behaviour that does not exist. See `README.md` for the module plan.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
