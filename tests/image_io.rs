//! PNG images in and out: `kiln::image` on files with hand-computed pixel
//! values, and `kiln run --input x=img.png` / `--output y.png` end to end.
//! Pixels are decoded with the `png` crate itself, not with Kiln's reader,
//! so a bug shared by the writer and the reader cannot hide.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln::image::{read_image, write_image_grid, ValueRange};
use kiln::runtime::npy;
use kiln::Tensor;

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("kiln runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-image-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A failure: exit code 1 (never 101, the panic code), one `error:` line.
fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {err}", o.status.code());
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    err
}

/// A decoded PNG: width, height, color type, 8-bit interleaved pixels.
struct Decoded {
    width: usize,
    height: usize,
    color: png::ColorType,
    pixels: Vec<u8>,
}

impl Decoded {
    fn channels(&self) -> usize {
        self.pixels.len() / (self.width * self.height)
    }

    fn at(&self, y: usize, x: usize) -> &[u8] {
        let c = self.channels();
        &self.pixels[(y * self.width + x) * c..][..c]
    }
}

fn decode(path: &Path) -> Decoded {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("png exists"));
    let mut reader = png::Decoder::new(file).read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    Decoded { width: info.width as usize, height: info.height as usize, color: info.color_type, pixels: buf }
}

fn encode(path: &Path, width: u32, height: u32, color: png::ColorType, pixels: &[u8]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let mut e = png::Encoder::new(file, width, height);
    e.set_color(color);
    e.set_depth(png::BitDepth::Eight);
    let mut w = e.write_header().expect("header");
    w.write_image_data(pixels).expect("data");
    w.finish().expect("finish");
}

fn tensor(shape: &[usize], values: Vec<f32>) -> Tensor {
    kiln::tensor::from_vec(shape, values).expect("shape")
}

#[test]
fn known_values_round_trip_with_hand_computed_pixels() {
    let dir = temp_dir("roundtrip");
    let p = dir.join("rgb.png");
    // One 1x4 RGB image; R, G, B planes in NCHW order.
    let r = [0.0, 0.5, 1.0, 0.25]; // levels 0, 128 (127.5 rounds up), 255, 64 (63.75)
    let g = [2.0, -3.0, f32::NAN, 0.1]; // clamped 255, clamped 0, NaN 0, 26 (25.5 rounds up)
    let b = [1.0 / 255.0, 0.998, 0.0, 0.75]; // 1, 254 (254.49), 0, 191 (191.25)
    let t = tensor(&[1, 3, 1, 4], [r, g, b].concat());
    write_image_grid(&p, &t, ValueRange::UNIT).expect("write");
    let d = decode(&p);
    assert_eq!((d.width, d.height, d.color), (4, 1, png::ColorType::Rgb));
    assert_eq!(d.pixels, [0, 255, 1, 128, 0, 254, 255, 0, 0, 64, 26, 191]);
    // Read back: level / 255 exactly, as torchvision's ToTensor.
    let back = read_image(&p, ValueRange::UNIT, None).expect("read");
    assert_eq!(back.shape(), [1, 3, 1, 4]);
    let want: Vec<f32> =
        [0u8, 128, 255, 64, 255, 0, 0, 26, 1, 254, 0, 191].iter().map(|&l| f32::from(l) / 255.0).collect();
    assert_eq!(back.as_slice().expect("contiguous"), want.as_slice());

    // -1,1: level = (v + 1) / 2 · 255, rounded half up.
    let p = dir.join("signed.png");
    let t = tensor(&[1, 1, 1, 5], vec![-1.0, 0.0, 1.0, 0.5, -0.5]);
    write_image_grid(&p, &t, ValueRange::SIGNED).expect("write");
    let d = decode(&p);
    assert_eq!(d.color, png::ColorType::Grayscale);
    assert_eq!(d.pixels, [0, 128, 255, 191, 64]);
    let back = read_image(&p, ValueRange::SIGNED, None).expect("read");
    let want: Vec<f32> = [0u8, 128, 255, 191, 64].iter().map(|&l| 2.0 * (f32::from(l) / 255.0) - 1.0).collect();
    assert_eq!(back.as_slice().expect("contiguous"), want.as_slice());
    assert_eq!((back[[0, 0, 0, 0]], back[[0, 0, 0, 2]]), (-1.0, 1.0));

    // Any lo < hi: 0,255 keeps the levels as they are.
    let levels = read_image(&p, ValueRange::new(0.0, 255.0).expect("range"), None).expect("read");
    assert_eq!(levels.as_slice().expect("contiguous"), [0.0, 128.0, 255.0, 191.0, 64.0]);
}

#[test]
fn a_batch_of_three_is_a_padded_two_by_two_grid() {
    let dir = temp_dir("grid");
    let p = dir.join("grid.png");
    // Three 3x2 (H x W) RGB tiles; tile k, channel c holds level 10·k + c + 1 everywhere.
    let (h, w) = (3, 2);
    let mut v = Vec::new();
    for k in 0..3 {
        for c in 0..3 {
            v.extend(std::iter::repeat_n((10 * k + c + 1) as f32, h * w));
        }
    }
    write_image_grid(&p, &tensor(&[3, 3, h, w], v), ValueRange::new(0.0, 255.0).expect("range")).expect("write");
    let d = decode(&p);
    // ceil(sqrt(3)) = 2 columns, 2 rows; padding 2 before, between and after the tiles.
    assert_eq!((d.width, d.height), (2 + 2 * (w + 2), 2 + 2 * (h + 2)));
    let origin = [(2, 2), (2, 2 + w + 2), (2 + h + 2, 2)];
    let mut tile_pixels = 0;
    for y in 0..d.height {
        for x in 0..d.width {
            let tile = origin.iter().position(|&(t, l)| (t..t + h).contains(&y) && (l..l + w).contains(&x));
            match tile {
                Some(k) => {
                    let k = k as u8;
                    assert_eq!(d.at(y, x), [10 * k + 1, 10 * k + 2, 10 * k + 3], "tile {k} at ({y}, {x})");
                    tile_pixels += 1;
                }
                // Padding and the empty fourth slot (origin (7, 6)) are black.
                None => assert_eq!(d.at(y, x), [0, 0, 0], "padding at ({y}, {x})"),
            }
        }
    }
    assert_eq!(tile_pixels, 3 * h * w);
    // Spot checks of the layout: the first row of tile 1, the padding column between tiles.
    // Tile 0 covers columns 2..4, padding 4..6, tile 1 from 6.
    let (t0, pad, t1) = ([1, 2, 3].as_slice(), [0, 0, 0].as_slice(), [11, 12, 13].as_slice());
    assert_eq!((d.at(2, 3), d.at(2, 4), d.at(2, 5), d.at(2, 6)), (t0, pad, pad, t1));
    // Tile 0 covers rows 2..5, padding 5..7, tile 2 from 7.
    assert_eq!((d.at(4, 2), d.at(5, 2), d.at(6, 2), d.at(7, 2)), (t0, pad, pad, [21, 22, 23].as_slice()));
}

#[test]
fn gray_and_rgb_convert_to_the_requested_channels() {
    let dir = temp_dir("convert");
    let gray = dir.join("gray.png");
    encode(&gray, 2, 1, png::ColorType::Grayscale, &[51, 204]);
    let rgb = read_image(&gray, ValueRange::UNIT, Some(3)).expect("gray → rgb");
    assert_eq!(rgb.shape(), [1, 3, 1, 2]);
    assert_eq!(rgb.as_slice().expect("contiguous"), [0.2, 0.8, 0.2, 0.8, 0.2, 0.8]);

    let color = dir.join("rgb.png");
    // Red, green, blue, white.
    encode(&color, 4, 1, png::ColorType::Rgb, &[255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
    let g = read_image(&color, ValueRange::UNIT, Some(1)).expect("rgb → gray");
    assert_eq!(g.shape(), [1, 1, 1, 4]);
    for (got, want) in g.iter().zip([0.299, 0.587, 0.114, 1.0]) {
        assert!((got - want).abs() < 1e-6, "luma {got} != {want}");
    }
    // Gray + alpha: alpha dropped by default, kept (after the gray copied to RGB) for 4.
    let ga = dir.join("ga.png");
    encode(&ga, 1, 1, png::ColorType::GrayscaleAlpha, &[255, 0]);
    assert_eq!(read_image(&ga, ValueRange::SIGNED, None).expect("read").as_slice().expect("c"), [1.0]);
    assert_eq!(
        read_image(&ga, ValueRange::SIGNED, Some(4)).expect("read").as_slice().expect("c"),
        [1.0, 1.0, 1.0, -1.0]
    );
    // RGBA: 3 channels by default.
    let rgba = dir.join("rgba.png");
    encode(&rgba, 1, 1, png::ColorType::Rgba, &[255, 0, 255, 128]);
    assert_eq!(read_image(&rgba, ValueRange::UNIT, None).expect("read").as_slice().expect("c"), [1.0, 0.0, 1.0]);
}

#[test]
fn truncated_and_corrupt_pngs_are_errors_not_panics() {
    let dir = temp_dir("truncated");
    let good = dir.join("good.png");
    let pixels: Vec<u8> = (0..24 * 24 * 3).map(|i| (i * 7 % 251) as u8).collect();
    encode(&good, 24, 24, png::ColorType::Rgb, &pixels);
    let bytes = std::fs::read(&good).expect("read");
    let cut = dir.join("cut.png");
    // Every prefix: in the signature, the header, the image data, the end chunk.
    for len in 0..bytes.len() - 12 {
        std::fs::write(&cut, &bytes[..len]).expect("write");
        let e = read_image(&cut, ValueRange::UNIT, None).expect_err("a truncated PNG is refused");
        assert!(matches!(e, kiln::Error::Image { .. }), "{len} bytes: {e:?}");
        assert_eq!(e.kind(), kiln::ErrorKind::InvalidInput);
        assert!(e.to_string().starts_with(&s(&cut)), "{e}");
    }
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let e = read_image(&cut, ValueRange::UNIT, None).expect_err("half a file");
    assert!(e.to_string().contains("truncated"), "{e}");
    // A flipped bit in the image data: the chunk's CRC no longer matches.
    let mut bad = bytes.clone();
    bad[bytes.len() / 2] ^= 0x10;
    std::fs::write(&cut, &bad).expect("write");
    let e = read_image(&cut, ValueRange::UNIT, None).expect_err("corrupt");
    assert!(e.to_string().contains("not a valid PNG"), "{e}");
}

#[test]
fn tensors_that_are_not_images_are_refused_with_their_shape() {
    let dir = temp_dir("notimage");
    let p = dir.join("no.png");
    let e = write_image_grid(&p, &Tensor::zeros(vec![2, 8, 4, 4]), ValueRange::UNIT).expect_err("8 channels");
    assert!(e.to_string().contains("[2, 8, 4, 4] is not an image: it has 8 channels (dim 1)"), "{e}");
    let e = write_image_grid(&p, &Tensor::zeros(vec![2, 16]), ValueRange::UNIT).expect_err("rank 2");
    assert!(e.to_string().contains("[2, 16] is not an image") && e.to_string().contains("rank 2"), "{e}");
    assert!(!p.exists(), "nothing is written for a refused tensor");
}

/// FSRCNN's input is `[1, 1, 16, 16]`: a gray PNG with known levels gives the
/// same output as the `.npy` file of level / 255.
#[test]
fn run_reads_a_png_input_like_the_same_values_as_npy() {
    let dir = temp_dir("fsrcnn");
    let levels: Vec<u8> = (0..256u32).map(|i| (i * 37 % 256) as u8).collect();
    let png_in = dir.join("x.png");
    encode(&png_in, 16, 16, png::ColorType::Grayscale, &levels);
    let npy_in = dir.join("x.npy");
    npy::write(&npy_in, &tensor(&[1, 1, 16, 16], levels.iter().map(|&l| f32::from(l) / 255.0).collect())).expect("npy");
    let run = |input: &Path, out: &Path, extra: &[&str]| {
        let (model, i, o) = (example_fsrcnn(), format!("x={}", s(input)), s(out));
        let mut args = vec!["run", model.as_str(), "--weights", FSRCNN_WEIGHTS];
        args.extend(["--input", i.as_str(), "--output", o.as_str(), "--threads", "1"]);
        args.extend(extra);
        let r = kiln(&args);
        assert!(r.status.success(), "{}", stderr(&r));
        r
    };
    let (from_png, from_npy) = (dir.join("png.npy"), dir.join("npy.npy"));
    run(&png_in, &from_png, &[]);
    run(&npy_in, &from_npy, &[]);
    let a = npy::read(&from_png).expect("output");
    assert_eq!(a.shape(), [1, 1, 48, 48]);
    assert_eq!(a, npy::read(&from_npy).expect("output"), "the image is just another way to give the tensor");

    // --input-range -1,1 is 2·level/255 − 1.
    let signed_npy = dir.join("xs.npy");
    npy::write(
        &signed_npy,
        &tensor(&[1, 1, 16, 16], levels.iter().map(|&l| 2.0 * (f32::from(l) / 255.0) - 1.0).collect()),
    )
    .expect("npy");
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    run(&png_in, &a, &["--input-range", "-1,1"]);
    run(&signed_npy, &b, &[]);
    assert_eq!(npy::read(&a).expect("a"), npy::read(&b).expect("b"));

    // An RGB image is converted to the model's one channel.
    let rgb_in = dir.join("rgb.png");
    let rgb: Vec<u8> = levels.iter().flat_map(|&l| [l, l, l]).collect();
    encode(&rgb_in, 16, 16, png::ColorType::Rgb, &rgb);
    let c = dir.join("c.npy");
    run(&rgb_in, &c, &[]);
    let (c, want) = (npy::read(&c).expect("c"), npy::read(&from_npy).expect("npy"));
    assert_eq!(c.shape(), want.shape());
    assert!(kiln::tensor::check_close(&c, &want, 1e-5).is_ok(), "gray luma of (l, l, l) is l");

    // The output as an image: no bounding activation, so its min..max, said on stderr.
    let img = dir.join("y.png");
    let r = run(&png_in, &img, &[]);
    assert!(stderr(&r).contains("observed range"), "{}", stderr(&r));
    let d = decode(&img);
    assert_eq!((d.width, d.height, d.color), (48, 48, png::ColorType::Grayscale));
    assert_eq!((d.pixels.iter().min(), d.pixels.iter().max()), (Some(&0), Some(&255)), "min..max spans 0..255");
}

const FSRCNN_WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fsrcnn.safetensors");

fn example_fsrcnn() -> String {
    example("fsrcnn.json")
}

#[test]
fn run_refuses_images_that_do_not_fit_the_model() {
    let dir = temp_dir("misfit");
    let big = dir.join("big.png");
    encode(&big, 20, 12, png::ColorType::Grayscale, &[0; 240]);
    let err = assert_clean_failure(&kiln(&["run", &example_fsrcnn(), "--input", &format!("x={}", s(&big))]));
    assert!(err.contains("`x`") && err.contains("[1, 1, 16, 16]") && err.contains("[1, 1, 12, 20]"), "{err}");

    let jpeg = dir.join("photo.jpg");
    std::fs::write(&jpeg, b"\xFF\xD8\xFF\xE0\0\x10JFIF\0").expect("write");
    let err = assert_clean_failure(&kiln(&["run", &example_fsrcnn(), "--input", &format!("x={}", s(&jpeg))]));
    assert!(err.contains("photo.jpg: is a JPEG image; Kiln reads PNG only"), "{err}");

    let cut = dir.join("cut.png");
    let bytes = std::fs::read(&big).expect("read");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).expect("write");
    let err = assert_clean_failure(&kiln(&["run", &example_fsrcnn(), "--input", &format!("x={}", s(&cut))]));
    assert!(err.contains("cut.png"), "{err}");

    // 2048² RGB compresses to a few KiB but decodes to 48 MiB of float32.
    let huge = dir.join("huge.png");
    encode(&huge, 2048, 2048, png::ColorType::Rgb, &vec![7; 2048 * 2048 * 3]);
    let err = assert_clean_failure(&kiln(&[
        "run",
        &example_fsrcnn(),
        "--input",
        &format!("x={}", s(&huge)),
        "--max-memory-mib",
        "8",
    ]));
    assert!(
        err.contains("decodes to a [1, 1, 2048, 2048] float32 tensor of 16 MiB, over the memory limit of 8 MiB"),
        "{err}"
    );

    let err = stderr(&kiln(&["run", &example_fsrcnn(), "--input-range", "1,-1"]));
    assert!(err.contains("invalid value range `1,-1`: the low bound must be below the high bound"), "{err}");
}

#[test]
fn dcgan_writes_its_batch_as_one_grid() {
    let dir = temp_dir("dcgan");
    let out = dir.join("out.png");
    let o = kiln(&["run", &example("dcgan.json"), "--output", &s(&out), "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("observed range"), "Tanh fixes the range: {}", stderr(&o));
    let d = decode(&out);
    // [2, 3, 64, 64]: 2 columns, 1 row.
    assert_eq!((d.width, d.height, d.color), (2 + 2 * 66, 2 + 66, png::ColorType::Rgb));
    assert_eq!(d.at(0, 0), [0, 0, 0], "padding");
    assert_eq!(d.at(30, 66), [0, 0, 0], "the padding column between the tiles");
    // Seeded weights give outputs near 0: mid-gray in Tanh's -1..1.
    for (y, x) in [(2, 2), (40, 30), (65, 131)] {
        assert!(d.at(y, x).iter().all(|&l| (100..=156).contains(&l)), "({y}, {x}): {:?}", d.at(y, x));
    }

    let o = kiln(&["run", &example("dcgan.json"), "--batch", "5", "--output", &s(&out), "--threads", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let d = decode(&out);
    assert_eq!((d.width, d.height), (2 + 3 * 66, 2 + 2 * 66), "5 tiles: 3 columns, 2 rows");
}

#[test]
fn several_outputs_get_numbered_pngs_with_their_activations_ranges() {
    let dir = temp_dir("multi");
    let model = dir.join("m.json");
    std::fs::write(
        &model,
        r#"{"inputs": {"x": [1, 1, 1, 3]}, "nodes": [
            {"name": "s", "op": "Sigmoid", "inputs": ["x"]},
            {"name": "t", "op": "Tanh", "inputs": ["x"]},
            {"name": "t2", "op": "Identity", "inputs": ["t"]},
            {"name": "h", "op": "Hardtanh", "args": {"min_val": 0.0, "max_val": 2.0}, "inputs": ["x"]},
            {"name": "r", "op": "ReLU", "inputs": ["x"]}],
          "outputs": ["s", "t2", "h", "r"]}"#,
    )
    .expect("write");
    let x = dir.join("x.npy");
    npy::write(&x, &tensor(&[1, 1, 1, 3], vec![-20.0, 0.0, 20.0])).expect("npy");
    let y = dir.join("y.png");
    let o = kiln(&["run", &s(&model), "--input", &format!("x={}", s(&x)), "--output", &s(&y)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let levels = |i: usize| decode(&dir.join(format!("y.{i}.png"))).pixels;
    assert_eq!(levels(0), [0, 128, 255], "Sigmoid: 0,1");
    assert_eq!(levels(1), [0, 128, 255], "Tanh through Identity: -1,1");
    assert_eq!(levels(2), [0, 0, 255], "Hardtanh(0, 2): clamps to 0,2; 0 is black");
    assert_eq!(levels(3), [0, 0, 255], "ReLU: its observed 0..20");
    let err = stderr(&o);
    assert!(err.contains("output `r` does not end in an activation") && err.contains("0,20"), "{err}");
    assert_eq!(err.matches("observed range").count(), 1, "only for `r`: {err}");

    // --output-range overrides the activations.
    let o =
        kiln(&["run", &s(&model), "--input", &format!("x={}", s(&x)), "--output", &s(&y), "--output-range", "-20,20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(levels(0), [128, 131, 134], "sigmoid 0, 0.5, 1 in -20..20: 127.5, 130.69, 133.88 (+0.5, floored)");
    assert_eq!(levels(3), [128, 128, 255]);
}

#[test]
fn non_image_outputs_are_refused_before_running() {
    let dir = temp_dir("nonimage");
    let model = dir.join("lin.json");
    std::fs::write(
        &model,
        r#"{"inputs": {"x": [2, 8]}, "nodes": [{"name": "fc", "op": "LazyLinear", "args": {"out_features": 4}}]}"#,
    )
    .expect("write");
    let y = dir.join("y.png");
    let err = assert_clean_failure(&kiln(&["run", &s(&model), "--output", &s(&y)]));
    assert!(
        err.contains("output `fc`: a tensor of shape [2, 4] is not an image") && err.contains("write it as .npy"),
        "{err}"
    );
    assert!(!y.exists());
    let wide = dir.join("wide.json");
    std::fs::write(&wide, r#"{"inputs": {"x": [1, 8, 4, 4]}, "nodes": [{"name": "act", "op": "Tanh"}]}"#)
        .expect("write");
    let err = assert_clean_failure(&kiln(&["run", &s(&wide), "--output", &s(&y)]));
    assert!(
        err.contains(
            "[1, 8, 4, 4] is not an image: it has 8 channels (dim 1), an image has 1 (gray), 3 (RGB) or 4 (RGBA)"
        ),
        "{err}"
    );
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--output", &s(&dir.join("y.jpg"))]));
    assert!(err.contains("Kiln writes PNG images only"), "{err}");
    // .npy stays as it was.
    let o = kiln(&["run", &s(&model), "--output", &s(&dir.join("y.npy"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(npy::read(dir.join("y.npy")).expect("npy").shape(), [2, 4]);
}

/// An ONNX model's image input is converted to the channel count the model
/// declares too, although it is read before the model (its shape binds the
/// model's symbolic dims).
#[test]
fn onnx_image_inputs_take_the_declared_channels() {
    let dir = temp_dir("onnx");
    let model = format!("{}/crates/onnx/tests/fixtures/conv_dynamic.onnx", env!("CARGO_MANIFEST_DIR"));
    let levels: Vec<u8> = (0..64u32).map(|i| (i * 4) as u8).collect();
    let gray = dir.join("g.png");
    encode(&gray, 8, 8, png::ColorType::Grayscale, &levels);
    let plane: Vec<f32> = levels.iter().map(|&l| f32::from(l) / 255.0).collect();
    let x = dir.join("x.npy");
    npy::write(&x, &tensor(&[1, 3, 8, 8], [plane.clone(), plane.clone(), plane].concat())).expect("npy");
    let (a, b) = (dir.join("a.npy"), dir.join("b.npy"));
    for (input, out) in [(&gray, &a), (&x, &b)] {
        let o = kiln(&["run", &model, "--input", &format!("x={}", s(input)), "--output", &s(out), "--threads", "1"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(npy::read(&a).expect("a"), npy::read(&b).expect("b"), "gray copied into the declared 3 channels");
}
