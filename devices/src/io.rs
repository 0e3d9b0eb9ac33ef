//! The device set: one cycle of reads and writes through the safety wrappers (being written).
