//! Drawing an [`IoGraph`] as a PNG, for `labctl pcap-summary --plot`.
//!
//! Students want the picture Wireshark's I/O graph gives (when did the resets and
//! retransmissions happen?) without installing Wireshark. The drawing lives here,
//! in the CLI, so that `labctl-pcap` stays a small analysis library without
//! drawing and font dependencies. Text uses the Hack font embedded in
//! `epaint_default_fonts` through plotters' `ab_glyph` support, so no system font
//! or fontconfig is needed on a laptop or in CI.
//!
//! The plot area is pure white and everything around it light grey, and the
//! error bars are the only pixels of [`ERRORS`]' colour inside it: that keeps the
//! picture readable, and lets a test find both from the pixels alone.

use std::fs::OpenOptions;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context as _;
use labctl_pcap::IoGraph;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// Width of the image in pixels.
pub const WIDTH: u32 = 1200;
/// Height of the image in pixels.
pub const HEIGHT: u32 = 600;
/// The "All packets" series, a step line.
pub const PACKETS: RGBColor = RGBColor(31, 119, 180);
/// The "TCP errors" series, bars.
pub const ERRORS: RGBColor = RGBColor(214, 39, 40);
/// Around the plot area: title, legend, axes and their labels.
const OUTSIDE: RGBColor = RGBColor(240, 240, 240);
const GRID: RGBColor = RGBColor(220, 220, 220);
const FONT: &str = "sans-serif";

/// Draws `graph` titled `title` and writes it to `path` as a PNG, all or nothing:
/// the image goes to a temporary file beside `path`, renamed over it when complete.
pub fn write_png(graph: &IoGraph, title: &str, path: &Path) -> anyhow::Result<()> {
    let pixels = render_rgb(graph, title)?;
    write_atomically(path, |out| {
        let mut encoder = png::Encoder::new(out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
        Ok(())
    })
    .with_context(|| format!("cannot write the plot to {}", path.display()))
}

/// The picture as RGB bytes, row by row, [`WIDTH`] × [`HEIGHT`].
pub fn render_rgb(graph: &IoGraph, title: &str) -> anyhow::Result<Vec<u8>> {
    register_font()?;
    let mut pixels = vec![0u8; WIDTH as usize * HEIGHT as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, graph, title).context("cannot draw the plot")?;
        root.present().context("cannot draw the plot")?;
    }
    Ok(pixels)
}

/// Plotters' `ab_glyph` support knows only fonts registered by name, once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::HACK_REGULAR)
            .is_ok()
    });
    anyhow::ensure!(ok, "the embedded font could not be loaded");
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(root: &Area<'_>, graph: &IoGraph, title: &str) -> DrawResult {
    root.fill(&OUTSIDE)?;
    let (head, body) = root.margin(10, 0, 0, 0).split_vertically(70);
    let head = head.titled(title, (FONT, 22).into_font().color(&BLACK))?;
    draw_legend(&head, graph)?;

    let buckets = &graph.buckets;
    let interval = graph.interval_s();
    let x_end = buckets.len().max(1) as f64 * interval;
    let peak = buckets.iter().map(|b| b.packets).max().unwrap_or(0).max(1);
    // Headroom above the highest interval, as Wireshark leaves.
    let y_end = peak + peak.div_ceil(10);
    let decimals = x_decimals(x_end);
    let x_label = |x: &f64| format!("{x:.decimals$}");
    let y_desc = format!("Packets/{}", interval_label(graph.interval_ns));

    let mut chart = ChartBuilder::on(&body)
        .margin_left(10)
        .margin_right(45)
        .margin_bottom(10)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_end, 0u64..y_end)?;
    chart.plotting_area().fill(&WHITE)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(BLACK)
        .x_labels(12)
        .y_labels(8)
        .x_label_formatter(&x_label)
        .x_desc("Time since the first packet (s)")
        .y_desc(y_desc)
        .label_style((FONT, 14).into_font().color(&BLACK))
        .axis_desc_style((FONT, 15).into_font().color(&BLACK))
        .draw()?;

    // Bars first: the packet line stays visible where it crosses them.
    chart.draw_series(
        buckets
            .iter()
            .enumerate()
            .filter(|(_, b)| b.problem_packets > 0)
            .map(|(i, b)| {
                let x0 = i as f64 * interval;
                Rectangle::new(
                    [(x0, 0), (x0 + interval, b.problem_packets)],
                    ERRORS.filled(),
                )
            }),
    )?;
    // A step line: flat across each interval, as the bucketing counts.
    let steps = buckets.iter().enumerate().flat_map(|(i, b)| {
        let x0 = i as f64 * interval;
        [(x0, b.packets), (x0 + interval, b.packets)]
    });
    chart.draw_series(LineSeries::new(steps, PACKETS.stroke_width(2)))?;
    Ok(())
}

/// The legend as one centred line under the title, outside the plot area so it
/// never hides data.
fn draw_legend(area: &Area<'_>, graph: &IoGraph) -> DrawResult {
    let style = (FONT, 15).into_font().color(&BLACK);
    let packets: u64 = graph.buckets.iter().map(|b| b.packets).sum();
    let flagged: u64 = graph.buckets.iter().map(|b| b.problem_packets).sum();
    let items = [
        (PACKETS, format!("All packets ({packets})"), false),
        (
            ERRORS,
            format!("TCP errors: packets with any TCP problem ({flagged})"),
            true,
        ),
    ];
    let swatch = 28;
    let gap = 40;
    let mut widths = Vec::new();
    for (_, text, _) in &items {
        widths.push(area.estimate_text_size(text, &style)?.0 as i32);
    }
    let total: i32 = widths.iter().map(|w| swatch + 8 + w).sum::<i32>() + gap;
    let (w, h) = area.dim_in_pixel();
    let mut x = (w as i32 - total) / 2;
    let y = h as i32 / 2;
    for ((color, text, bar), width) in items.iter().zip(widths) {
        if *bar {
            area.draw(&Rectangle::new(
                [(x, y - 6), (x + swatch, y + 6)],
                color.filled(),
            ))?;
        } else {
            area.draw(&PathElement::new(
                [(x, y), (x + swatch, y)],
                color.stroke_width(2),
            ))?;
        }
        area.draw_text(text, &style, (x + swatch + 8, y - 8))?;
        x += swatch + 8 + width + gap;
    }
    Ok(())
}

/// Enough decimals on the time axis for ticks about a tenth of `x_end` apart.
fn x_decimals(x_end: f64) -> usize {
    let step = x_end / 10.0;
    if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 9.0) as usize
    }
}

/// `1 s`, `200 ms`, `1.5 ms`, `250 µs`: the interval as people write it.
fn interval_label(ns: u64) -> String {
    let (unit, name) = match ns {
        1_000_000_000.. => (1e9, "s"),
        1_000_000.. => (1e6, "ms"),
        1_000.. => (1e3, "µs"),
        _ => (1.0, "ns"),
    };
    let value = format!("{:.3}", ns as f64 / unit);
    let value = value.trim_end_matches('0').trim_end_matches('.');
    format!("{value} {name}")
}

/// Writes `path` through `write`, so that `path` is either untouched or complete:
/// a temporary file beside it (same directory, so the rename cannot cross file
/// systems) is renamed over it at the end, and removed on failure.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<std::fs::File>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    struct Remove(Option<PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            if let Some(p) = self.0.take() {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let mut guard = Remove(Some(tmp.clone()));
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    guard.0 = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use labctl_pcap::IoGraphBuilder;

    const S: u64 = 1_000_000_000;

    fn pixel(rgb: &[u8], x: u32, y: u32) -> [u8; 3] {
        let i = (y * WIDTH + x) as usize * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    /// The white plot area's bounds, inclusive: `(x0, x1, y0, y1)`.
    fn plot_area(rgb: &[u8]) -> (u32, u32, u32, u32) {
        let white: Vec<(u32, u32)> = (0..HEIGHT)
            .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(rgb, x, y) == [255; 3])
            .collect();
        let x0 = white.iter().map(|p| p.0).min().expect("a white plot area");
        let x1 = white.iter().map(|p| p.0).max().expect("a white plot area");
        let y0 = white.iter().map(|p| p.1).min().expect("a white plot area");
        let y1 = white.iter().map(|p| p.1).max().expect("a white plot area");
        (x0, x1, y0, y1)
    }

    /// Columns holding `color` inside the white plot area, and that area's x range.
    fn columns_with(rgb: &[u8], color: RGBColor) -> (Vec<u32>, (u32, u32)) {
        let (x0, x1, y0, y1) = plot_area(rgb);
        let want = [color.0, color.1, color.2];
        let cols = (x0..=x1)
            .filter(|&x| (y0..=y1).any(|y| pixel(rgb, x, y) == want))
            .collect();
        (cols, (x0, x1))
    }

    #[test]
    fn error_bars_stand_where_the_flagged_packets_are() {
        let mut b = IoGraphBuilder::new();
        for t in 0..10 {
            // Flagged packets only in the last tenth.
            b.push(t * S, 60, t == 9);
        }
        let g = b.build(Some(S)).expect("graph");
        let rgb = render_rgb(&g, "test.pcap").expect("render");
        assert_eq!(rgb.len(), (WIDTH * HEIGHT * 3) as usize);
        let (errors, (x0, x1)) = columns_with(&rgb, ERRORS);
        assert!(!errors.is_empty(), "no error bar drawn");
        let last_tenth = x0 + (x1 - x0) * 9 / 10;
        assert!(
            errors.iter().all(|&x| x + 1 >= last_tenth),
            "error pixels at {errors:?}, plot area {x0}..{x1}"
        );
        let (packets, _) = columns_with(&rgb, PACKETS);
        assert!(
            packets.iter().any(|&x| x < x0 + (x1 - x0) / 10),
            "{packets:?}"
        );
    }

    #[test]
    fn an_empty_capture_still_draws_axes() {
        let g = IoGraphBuilder::new().build(None).expect("graph");
        let rgb = render_rgb(&g, "empty.pcap").expect("render");
        let (errors, _) = columns_with(&rgb, ERRORS);
        assert!(errors.is_empty());
        // The axes are dark lines just outside the plot area: the y axis along
        // its left edge, the x axis along its bottom, each spanning it fully.
        let (x0, x1, y0, y1) = plot_area(&rgb);
        let dark = |x: u32, y: u32| pixel(&rgb, x, y).iter().all(|&c| c < 64);
        assert!(
            (x0.saturating_sub(4)..x0).any(|x| (y0..=y1).all(|y| dark(x, y))),
            "no y axis left of the plot area {x0}..{x1} x {y0}..{y1}"
        );
        assert!(
            (y1 + 1..=(y1 + 4).min(HEIGHT - 1)).any(|y| (x0..=x1).all(|x| dark(x, y))),
            "no x axis below the plot area {x0}..{x1} x {y0}..{y1}"
        );
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(interval_label(S), "1 s");
        assert_eq!(interval_label(20 * S), "20 s");
        assert_eq!(interval_label(200_000_000), "200 ms");
        assert_eq!(interval_label(1_500_000), "1.5 ms");
        assert_eq!(interval_label(250_000), "250 µs");
        assert_eq!(interval_label(7), "7 ns");
        assert_eq!(x_decimals(100.0), 0);
        assert_eq!(x_decimals(3.0), 1);
        assert_eq!(x_decimals(0.15), 2);
        assert_eq!(x_decimals(0.0), 0);
    }

    #[test]
    fn writing_is_all_or_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("plot.png");
        std::fs::write(&target, b"old").expect("old file");
        let err = write_atomically(&target, |out| {
            out.write_all(b"half")?;
            anyhow::bail!("drawing failed")
        })
        .expect_err("the writer failed");
        assert_eq!(err.to_string(), "drawing failed");
        assert_eq!(std::fs::read(&target).expect("old file"), b"old");
        let g = IoGraphBuilder::new().build(None).expect("graph");
        write_png(&g, "t", &target).expect("write");
        let png = std::fs::read(&target).expect("new file");
        assert_eq!(&png[1..4], b"PNG");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["plot.png"], "no temporary file left");

        let err = write_png(&g, "t", &dir.path().join("missing/plot.png"))
            .expect_err("no such directory");
        assert!(format!("{err:#}").contains("missing/plot.png"), "{err:#}");
    }
}
