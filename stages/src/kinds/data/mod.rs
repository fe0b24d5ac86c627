//! Kinds for generic tables: read a file (`load`), render a template per row
//! (`render`), and the relational transforms on polars (`filter`, `select`,
//! `sample`, `join`, `concat`; feature `polars`).
//!
//! May import: `api`, `text`. Not another kind.

#[cfg(feature = "polars")]
pub mod concat;
#[cfg(feature = "polars")]
pub mod filter;
#[cfg(feature = "polars")]
pub mod join;
pub mod load;
pub mod render;
#[cfg(feature = "polars")]
pub mod sample;
#[cfg(feature = "polars")]
pub mod select;
