//! Generates Rust bindings for libsquashfs (squashfs-tools-ng) and the two liblzo2 functions the
//! image module needs, and links both libraries.
//!
//! libsquashfs is the LGPL core of squashfs-tools-ng: its writer API (block processor, directory
//! writer, meta data writers, tables) is what `image::write` drives, and its reader API is what
//! `image::read` uses. It has no LZO support (LZO is GPL), so the LZO compressor object is
//! implemented in Rust on top of liblzo2, like gensquashfs does in C.

use std::env;
use std::path::PathBuf;

/// Everything from `/usr/include/sqfs`, plus LZO1X.
const HEADER: &str = r#"
#include <sqfs/predef.h>
#include <sqfs/block.h>
#include <sqfs/block_processor.h>
#include <sqfs/block_writer.h>
#include <sqfs/compressor.h>
#include <sqfs/data_reader.h>
#include <sqfs/dir.h>
#include <sqfs/dir_reader.h>
#include <sqfs/dir_writer.h>
#include <sqfs/error.h>
#include <sqfs/frag_table.h>
#include <sqfs/id_table.h>
#include <sqfs/inode.h>
#include <sqfs/io.h>
#include <sqfs/meta_reader.h>
#include <sqfs/meta_writer.h>
#include <sqfs/super.h>
#include <sqfs/table.h>
#include <lzo/lzo1x.h>
"#;

/// `pkg-config --variable=NAME PACKAGE`, if pkg-config answers.
fn pkg_config_var(package: &str, name: &str) -> Option<String> {
    let out = std::process::Command::new("pkg-config")
        .arg(format!("--variable={name}"))
        .arg(package)
        .output()
        .ok()?;
    let value = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !value.is_empty()).then_some(value)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The metadata-only build (no `image` feature) links no C library.
    if env::var_os("CARGO_FEATURE_IMAGE").is_none() {
        return;
    }
    // Static: every `pack` and `packd` start would otherwise load six shared libraries that
    // most commands (`pack run` above all) never use. The archives come with the -dev packages
    // `make deps` installs; pkg-config says where they are and what libsquashfs needs.
    let libdir = pkg_config_var("libsquashfs1", "libdir")
        .unwrap_or_else(|| "/usr/lib/x86_64-linux-gnu".to_string());
    println!("cargo:rustc-link-search=native={libdir}");
    for lib in ["squashfs", "lzo2", "zstd", "lzma", "lz4", "z"] {
        println!("cargo:rustc-link-lib=static={lib}");
    }

    let bindings = bindgen::Builder::default()
        .header_contents("packfmt_sqfs.h", HEADER)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .rust_edition(bindgen::RustEdition::Edition2024)
        .allowlist_item("(sqfs|SQFS)_.*")
        .allowlist_function("lzo1x_999_compress_level|lzo1x_decompress_safe|__lzo_init_v2")
        .allowlist_type("lzo_callback_t")
        .allowlist_var("LZO_VERSION|LZO_E_OK")
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on <sqfs/*.h>: are libsquashfs-dev, liblzo2-dev and libclang installed?");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts"));
    bindings
        .write_to_file(out.join("sqfs_bindings.rs"))
        .expect("cannot write the generated bindings to OUT_DIR");
}
