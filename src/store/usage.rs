//! Usage records in the store (to be built).
