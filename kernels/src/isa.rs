//! The instruction sets the kernels are compiled for, detected at run time.

/// The best instruction set of this CPU that the kernels have code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX-512F with AVX2, FMA and POPCNT (every AVX-512 CPU has these; the AVX-512 kernels enable them too).
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("popcnt") {
                    return Isa::Avx512;
                }
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }
}

/// AVX2 and FMA (also true where AVX-512 is).
pub(crate) fn has_avx2_fma() -> bool {
    Isa::detect() != Isa::Portable
}

/// The AVX-512 set of [`Isa::Avx512`].
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        Isa::detect() == Isa::Avx512
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
