pub mod cose;
