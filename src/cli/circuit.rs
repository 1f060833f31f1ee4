//! `circuitscope circuit`: import and show circuit files.
