//! Webhook delivery (to be built).
