//! Membership changes.
