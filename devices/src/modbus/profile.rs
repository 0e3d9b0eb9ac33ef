//! Register-map profiles (being written).
