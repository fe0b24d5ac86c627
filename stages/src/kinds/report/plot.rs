//! Charts for `report`, drawn with plotters into PNG and SVG.
//!
//! Text is drawn with DejaVu Sans compiled into the binary, so a machine
//! without fonts draws the same pixels as one with them, and the same data
//! always gives the same bytes (the PNG is a cached artifact).

use super::pivot::Pivot;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::Once;

/// Colour-blind-safe categorical colours (Okabe and Ito), then a few more.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
    RGBColor(127, 127, 127),
    RGBColor(140, 86, 75),
];

const FONT: &str = "sans-serif";

fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // The bytes are a valid TrueType font compiled in; failure is a build defect.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans is not a font"));
        plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold())
            .unwrap_or_else(|_| panic!("embedded DejaVu Sans Bold is not a font"));
    });
}

/// Titles and size shared by every chart.
#[derive(Debug, Clone)]
pub struct Frame {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub width: u32,
    pub height: u32,
}

/// One named line of points.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub enum Chart {
    /// Lines over a numeric x; `log_x` spaces x on a log2 scale (N = 1, 2, 4, ...).
    Lines {
        lines: Vec<Line>,
        log_x: bool,
        y_range: Option<(f64, f64)>,
    },
    /// Bars over categories: one segment per y column, stacked or side by side.
    Bars {
        categories: Vec<String>,
        segments: Vec<(String, Vec<f64>)>,
        stacked: bool,
        y_range: Option<(f64, f64)>,
    },
    /// A coloured grid with the value in each cell.
    Heatmap { pivot: Pivot, digits: usize },
}

/// A numeric axis whose ticks sit exactly on given values (the N or
/// temperatures of a sweep, category centres), or where plotters puts them
/// when none are given.
#[derive(Clone)]
struct KeyedAxis {
    range: std::ops::Range<f64>,
    keys: Vec<f64>,
}

impl KeyedAxis {
    fn new(range: std::ops::Range<f64>, keys: Vec<f64>) -> Self {
        KeyedAxis { range, keys }
    }

    fn linear(&self) -> RangedCoordf64 {
        RangedCoordf64::from(self.range.clone())
    }
}

impl Ranged for KeyedAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear().map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if self.keys.is_empty() {
            self.linear().key_points(hint)
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl ValueFormatter<f64> for KeyedAxis {
    fn format(value: &f64) -> String {
        tick(*value)
    }
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing failed: {e:?}")
}

/// The chart as PNG bytes.
pub fn png(frame: &Frame, chart: &Chart) -> Result<Vec<u8>, String> {
    register_fonts();
    let (w, h) = (frame.width, frame.height);
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        draw(&root, frame, chart)?;
        root.present().map_err(err)?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(&pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// The chart as an SVG document.
pub fn svg(frame: &Frame, chart: &Chart) -> Result<String, String> {
    register_fonts();
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (frame.width, frame.height)).into_drawing_area();
        draw(&root, frame, chart)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    frame: &Frame,
    chart: &Chart,
) -> DrawResult {
    root.fill(&WHITE).map_err(err)?;
    match chart {
        Chart::Lines {
            lines,
            log_x,
            y_range,
        } => draw_lines(root, frame, lines, *log_x, *y_range),
        Chart::Bars {
            categories,
            segments,
            stacked,
            y_range,
        } => draw_bars(root, frame, categories, segments, *stacked, *y_range),
        Chart::Heatmap { pivot, digits } => draw_heatmap(root, frame, pivot, *digits),
    }
}

/// What `titled_chart` builds over the coordinates `x` and `y`.
type Chart2d<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// A titled chart over `x` by `y`, `y_label_area` pixels left for the y labels.
fn titled_chart<'a, DB: DrawingBackend, X: AsRangedCoord, Y: AsRangedCoord>(
    root: &'a DrawingArea<DB, Shift>,
    frame: &Frame,
    y_label_area: u32,
    x: X,
    y: Y,
) -> Result<Chart2d<'a, DB, X, Y>, String> {
    ChartBuilder::on(root)
        .caption(&frame.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// The legend box of every chart with named series.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .position(position)
        .draw()
        .map_err(err)
}

/// A y range from 0 (or below, for negative data) to `headroom` (a share of
/// the span) above the top.
fn auto_range(values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, f64::NEG_INFINITY);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !hi.is_finite() || hi <= lo {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * headroom;
    (if lo < 0.0 { lo - pad } else { lo }, hi + pad)
}

/// Shortest text for a tick value: `8`, `0.7`, `1e-4`.
pub fn tick(v: f64) -> String {
    if v == v.round() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    frame: &Frame,
    lines: &[Line],
    log_x: bool,
    y_range: Option<(f64, f64)>,
) -> DrawResult {
    let to_x = |x: f64| if log_x { x.log2() } else { x };
    let mut xs: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| to_x(p.0)))
        .collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    let (mut x0, mut x1) = match (xs.first(), xs.last()) {
        (Some(a), Some(b)) => (*a, *b),
        _ => (0.0, 1.0),
    };
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let margin = (x1 - x0) * 0.04;
    let (y0, y1) = y_range.unwrap_or_else(|| {
        auto_range(
            lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)),
            0.08,
        )
    });
    // Ticks sit on the x values present; with many, let plotters choose.
    let key_points = if xs.len() <= 12 {
        xs.clone()
    } else {
        Vec::new()
    };
    let mut chart = titled_chart(
        root,
        frame,
        64,
        KeyedAxis::new(x0 - margin..x1 + margin, key_points.clone()),
        y0..y1,
    )?;
    let x_format = |v: &f64| tick(if log_x { 2f64.powf(*v) } else { *v });
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(frame.x_label.as_str())
        .y_desc(frame.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&x_format)
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(WHITE.mix(0.0));
    if key_points.is_empty() {
        mesh.x_labels(10);
    }
    mesh.draw().map_err(err)?;
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(x, y)| (to_x(x), y)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(line.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(err)?;
    }
    if lines.len() > 1 || lines.iter().any(|l| !l.label.is_empty()) {
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    frame: &Frame,
    categories: &[String],
    segments: &[(String, Vec<f64>)],
    stacked: bool,
    y_range: Option<(f64, f64)>,
) -> DrawResult {
    let n = categories.len().max(1) as f64;
    let tops = (0..categories.len()).map(|c| {
        if stacked {
            segments.iter().map(|(_, v)| v[c].max(0.0)).sum::<f64>()
        } else {
            segments.iter().map(|(_, v)| v[c]).fold(0.0, f64::max)
        }
    });
    // Room above the bars for the legend in the upper right.
    let (y0, y1) = y_range.unwrap_or_else(|| auto_range(tops, 0.3));
    let centers: Vec<f64> = (0..categories.len()).map(|c| c as f64 + 0.5).collect();
    let mut chart = titled_chart(root, frame, 64, KeyedAxis::new(0.0..n, centers), y0..y1)?;
    let x_format = |v: &f64| {
        let i = (*v - 0.5).round();
        if i >= 0.0 && (i as usize) < categories.len() {
            categories[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(frame.x_label.as_str())
        .y_desc(frame.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&x_format)
        .y_label_formatter(&|v| tick(*v))
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let mut base = vec![0.0f64; categories.len()];
    let width = 0.8
        / if stacked {
            1.0
        } else {
            segments.len().max(1) as f64
        };
    for (s, (label, values)) in segments.iter().enumerate() {
        let color = PALETTE[s % PALETTE.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = values
            .iter()
            .enumerate()
            .map(|(c, &v)| {
                let left = c as f64 + 0.1 + if stacked { 0.0 } else { s as f64 * width };
                let bottom = if stacked { base[c] } else { 0.0 };
                if stacked {
                    base[c] += v.max(0.0);
                }
                Rectangle::new([(left, bottom), (left + width, bottom + v)], color.filled())
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// White to blue for plain values; red through white to blue for gains,
/// centred on zero so the sign reads at a glance.
fn cell_color(value: f64, lo: f64, hi: f64, signed: bool) -> RGBColor {
    let blend = |to: (u8, u8, u8), t: f64| {
        let t = t.clamp(0.0, 1.0);
        let mix = |a: u8| (255.0 + (a as f64 - 255.0) * t).round() as u8;
        RGBColor(mix(to.0), mix(to.1), mix(to.2))
    };
    const BLUE: (u8, u8, u8) = (33, 102, 172);
    const RED: (u8, u8, u8) = (178, 24, 43);
    if signed {
        let scale = lo.abs().max(hi.abs()).max(f64::MIN_POSITIVE);
        if value >= 0.0 {
            blend(BLUE, value / scale)
        } else {
            blend(RED, -value / scale)
        }
    } else {
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        blend(BLUE, (value - lo) / span)
    }
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    frame: &Frame,
    pivot: &Pivot,
    digits: usize,
) -> DrawResult {
    let rows = pivot.row_keys.len().max(1);
    let cols = pivot.column_headers().len().max(1);
    let values: Vec<f64> = pivot.cells.iter().flatten().flatten().copied().collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let row_labels: Vec<String> = pivot.row_keys.iter().map(|k| k.join(" / ")).collect();
    let col_labels = pivot.column_headers();
    let longest_row_label = row_labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(4);
    let mut chart = titled_chart(
        root,
        frame,
        (longest_row_label as u32 * 8 + 24).min(frame.width / 3),
        KeyedAxis::new(
            0.0..cols as f64,
            (0..cols).map(|c| c as f64 + 0.5).collect(),
        ),
        KeyedAxis::new(
            0.0..rows as f64,
            (0..rows).map(|r| r as f64 + 0.5).collect(),
        ),
    )?;
    // Row 0 at the top, as in the table.
    let row_at = |y: f64| rows - 1 - (y - 0.5).round().clamp(0.0, rows as f64 - 1.0) as usize;
    let x_format = |v: &f64| {
        col_labels
            .get((*v - 0.5).round().max(0.0) as usize)
            .cloned()
            .unwrap_or_default()
    };
    let y_format = |v: &f64| row_labels.get(row_at(*v)).cloned().unwrap_or_default();
    chart
        .configure_mesh()
        .x_desc(frame.x_label.as_str())
        .y_desc(frame.y_label.as_str())
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 16))
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .disable_mesh()
        .draw()
        .map_err(err)?;
    let mut cells = Vec::new();
    let mut labels = Vec::new();
    for (r, row) in pivot.cells.iter().enumerate() {
        let y = (rows - 1 - r) as f64;
        for (c, value) in row.iter().enumerate() {
            let x = c as f64;
            let (fill, text) = match value {
                Some(v) => (
                    cell_color(*v, lo, hi, pivot.signed),
                    pivot.format_value(Some(*v), digits).unwrap_or_default(),
                ),
                None => (RGBColor(235, 235, 235), "–".to_string()),
            };
            cells.push(Rectangle::new(
                [(x + 0.02, y + 0.02), (x + 0.98, y + 0.98)],
                fill.filled(),
            ));
            let RGBColor(red, green, blue) = fill;
            let dark = (red as u32 + green as u32 + blue as u32) < 330;
            let style = TextStyle::from((FONT, 14).into_font())
                .color(if dark { &WHITE } else { &BLACK })
                .pos(Pos::new(HPos::Center, VPos::Center));
            labels.push(Text::new(text, (x + 0.5, y + 0.5), style));
        }
    }
    chart.draw_series(cells).map_err(err)?;
    chart.draw_series(labels).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            title: "pass@1 vs N".into(),
            x_label: "N".into(),
            y_label: "pass@1 (%)".into(),
            width: 480,
            height: 320,
        }
    }

    fn lines() -> Chart {
        Chart::Lines {
            lines: vec![
                Line {
                    label: "next".into(),
                    points: vec![(1.0, 10.0), (2.0, 15.0), (4.0, 22.5), (8.0, 30.0)],
                },
                Line {
                    label: "notrace".into(),
                    points: vec![(1.0, 9.0), (2.0, 12.0), (4.0, 20.0), (8.0, 24.0)],
                },
            ],
            log_x: true,
            y_range: None,
        }
    }

    /// Decode a PNG back to its pixels.
    fn pixels(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).expect("one frame");
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    /// How plotters writes a text element's content.
    fn svg_text(text: &str) -> String {
        format!(">\n{text}\n</text>")
    }

    fn count_color(pixels: &[u8], color: RGBColor) -> usize {
        pixels
            .chunks(3)
            .filter(|p| p[0] == color.0 && p[1] == color.1 && p[2] == color.2)
            .count()
    }

    #[test]
    fn a_line_chart_is_a_deterministic_png_with_each_series_drawn() {
        let a = png(&frame(), &lines()).expect("draws");
        let b = png(&frame(), &lines()).expect("draws");
        assert_eq!(a, b, "same data must give the same bytes (it is cached)");
        let (w, h, px) = pixels(&a);
        assert_eq!((w, h), (480, 320));
        // Both series colours appear, in quantity (lines and markers, not a stray pixel).
        assert!(count_color(&px, PALETTE[0]) > 200, "first series missing");
        assert!(count_color(&px, PALETTE[1]) > 200, "second series missing");
        // Text was rendered with the embedded font: dark pixels beyond the axes.
        let dark = px
            .chunks(3)
            .filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60)
            .count();
        assert!(dark > 500, "no text drawn ({dark} dark pixels)");
    }

    #[test]
    fn svg_carries_titles_legend_and_log2_ticks_as_text() {
        let s = svg(&frame(), &lines()).expect("draws");
        assert!(s.starts_with("<svg"), "{}", &s[..60.min(s.len())]);
        for text in ["pass@1 vs N", "pass@1 (%)", "next", "notrace", "8", "4"] {
            assert!(s.contains(&svg_text(text)), "svg lacks {text}");
        }
        // log2 spacing: the x tick `2` sits midway between `1` and `4`.
        let x_of = |label: &str| -> f64 {
            let at = s.find(&svg_text(label)).expect("tick");
            let tag = &s[s[..at].rfind("<text").expect("text tag")..at];
            let x = tag.split("x=\"").nth(1).expect("x attr");
            x[..x.find('"').expect("quote")].parse().expect("number")
        };
        let (x1, x2, x4) = (x_of("1"), x_of("2"), x_of("4"));
        assert!(((x2 - x1) - (x4 - x2)).abs() < 1.5, "{x1} {x2} {x4}");
    }

    #[test]
    fn stacked_bars_and_heatmap_draw_their_cells() {
        let bars = Chart::Bars {
            categories: vec!["1".into(), "2".into(), "3".into()],
            segments: vec![
                ("assertion".into(), vec![50.0, 40.0, 30.0]),
                ("runtime".into(), vec![30.0, 30.0, 20.0]),
            ],
            stacked: true,
            y_range: Some((0.0, 100.0)),
        };
        let (_, _, px) = pixels(&png(&frame(), &bars).expect("draws"));
        let first = count_color(&px, PALETTE[0]);
        let second = count_color(&px, PALETTE[1]);
        // 120 vs 80 units of height: the first segment covers about 1.5x the second.
        let ratio = first as f64 / second as f64;
        assert!((1.3..1.7).contains(&ratio), "{first} vs {second}");

        let heat = Chart::Heatmap {
            pivot: heat_pivot(),
            digits: 1,
        };
        let (_, _, px) = pixels(&png(&frame(), &heat).expect("draws"));
        let blue = count_color(&px, RGBColor(33, 102, 172));
        let red = count_color(&px, RGBColor(178, 24, 43));
        assert!(blue > 1000 && red > 1000, "blue {blue} red {red}");
        let s = svg(&frame(), &heat).expect("svg");
        assert!(
            s.contains(&svg_text("+5.0")) && s.contains(&svg_text("-5.0")),
            "values missing"
        );
    }

    fn heat_pivot() -> Pivot {
        let mut p = Pivot::from_records(
            vec!["model".into()],
            vec!["representation".into()],
            "gain".into(),
            vec![
                (vec!["a".into()], vec!["next".into()], 5.0),
                (vec!["a".into()], vec!["concise".into()], -5.0),
            ],
        )
        .expect("records");
        p.signed = true;
        p
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(8.0), "8");
        assert_eq!(tick(0.7), "0.7");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(-2.0), "-2");
    }
}
