//! The one integration test binary (ripgrep/uv style): `tw` is run as a user
//! runs it, on specs written into temp dirs.

// Test helpers panic on unexpected failures by design.
#![allow(clippy::unwrap_used)]
mod battery;
mod browser;
mod cache;
mod dataset;
mod errors;
mod harness;
mod house;
mod keys;
mod llm;
mod matrix;
mod models;
mod paper;
mod plans;
mod programs;
mod prompts;
mod release;
mod reports;
mod representations;
mod sandbox;
mod scale;
mod scoring;
mod trace_tasks;
