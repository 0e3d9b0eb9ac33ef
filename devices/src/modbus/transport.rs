//! tokio-modbus TCP/RTU clients and the read batcher (being written).
