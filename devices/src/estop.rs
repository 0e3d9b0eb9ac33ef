//! E-stop inputs through embedded-hal digital pins (being written).
