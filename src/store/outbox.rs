//! The webhook outbox in the store (to be built).
