//! SunSpec discovery, models and controls (being written).
