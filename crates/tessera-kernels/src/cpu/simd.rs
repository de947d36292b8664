//! Instruction-set selection. The GEMM micro-kernels are written per ISA
//! with intrinsics, the depthwise conv's block loops over a small vector
//! trait (`cpu::depthwise`); everything else (pooling, elementwise, GEMV)
//! is plain Rust compiled several times, once per ISA, through the
//! `multiversion!` macro, so LLVM vectorises it for the machine actually
//! found at run time.

/// The SIMD path a [`crate::CpuBackend`] runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// x86-64 AVX-512F (512-bit vectors, 32 registers).
    Avx512,
    /// x86-64 AVX2 + FMA (256-bit vectors).
    Avx2,
    /// WebAssembly `simd128` (128-bit vectors), the browser path.
    Simd128,
    /// Portable Rust: the fallback on any other target.
    Scalar,
}

impl Isa {
    /// The best ISA this machine supports.
    pub fn detect() -> Isa {
        Isa::all_available()[0]
    }

    /// Every ISA this machine can run, best first (tests cover them all).
    pub fn all_available() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Simd128, Isa::Scalar].into_iter().filter(|i| i.is_available()).collect()
    }

    /// Whether this machine can run the ISA.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && Isa::Avx2.is_available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            Isa::Scalar => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Short lower-case name, as shown in `Backend::name` ("avx512").
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Simd128 => "simd128",
            Isa::Scalar => "scalar",
        }
    }
}

/// Defines `fn name(isa: Isa, args…) -> R` whose body is compiled once per
/// ISA: plain Rust in an `#[inline(always)]` inner function, instantiated
/// inside `#[target_feature]` wrappers (AVX-512, AVX2+FMA) so LLVM
/// vectorises it for the machine found at run time, and called directly
/// elsewhere (wasm `simd128` is a compile-time feature there). The
/// arguments stay function parameters, so slices keep their no-alias
/// guarantees. Every `Isa` a backend holds was checked available, which is
/// what makes the wrappers' `unsafe` calls sound.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name(isa: $crate::cpu::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                imp($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                imp($($arg),*)
            }
            match isa {
                // SAFETY: a backend only holds an ISA `is_available` confirmed.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::simd::Isa::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::simd::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => imp($($arg),*),
            }
        }
    };
    // An `unsafe fn` (raw-pointer arguments): the same, callers uphold its contract.
    ($(#[$meta:meta])* $vis:vis unsafe fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        ///
        /// # Safety
        /// The pointer arguments must cover what the body reads and writes.
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name(isa: $crate::cpu::simd::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn imp($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                unsafe { imp($($arg),*) }
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                unsafe { imp($($arg),*) }
            }
            // SAFETY: the ISA was checked available; the rest is the caller's contract.
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    $crate::cpu::simd::Isa::Avx512 => avx512($($arg),*),
                    #[cfg(target_arch = "x86_64")]
                    $crate::cpu::simd::Isa::Avx2 => avx2($($arg),*),
                    _ => imp($($arg),*),
                }
            }
        }
    };
}
pub(crate) use multiversion;

/// A 64-byte aligned window of `len` floats inside `buf` (grown as needed),
/// so packed panels start on cache-line boundaries.
pub(crate) fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let off = buf.as_ptr().align_offset(64).min(15);
    &mut buf[off..off + len]
}
