//! Drawing the [`App`]: one frame from its state, nothing else.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph};
use unicode_width::UnicodeWidthChar as _;

use crate::app::App;
use crate::model::Tone;

/// Smallest screen drawn; below, the screen says so.
const MIN_WIDTH: u16 = 40;
const MIN_HEIGHT: u16 = 10;
/// Rows of the completion menu at most.
const MENU_ROWS: usize = 6;
/// Rows of the prompt line at most.
const INPUT_ROWS: usize = 5;

fn tone_style(tone: Tone, color: bool) -> Style {
    let style = Style::default();
    if !color {
        return match tone {
            Tone::Dim => style.add_modifier(Modifier::DIM),
            Tone::Bad | Tone::Warn => style.add_modifier(Modifier::BOLD),
            _ => style,
        };
    }
    match tone {
        Tone::Plain => style,
        Tone::Dim => style.fg(Color::DarkGray),
        Tone::Good => style.fg(Color::Green),
        Tone::Bad => style.fg(Color::Red),
        Tone::Warn => style.fg(Color::Yellow),
        Tone::Agent => style.fg(Color::Cyan),
    }
}

/// `text` cut into rows of at most `width` columns (wide characters count twice).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    for line in text.split('\n') {
        let (mut row, mut used) = (String::new(), 0);
        for c in line.chars() {
            let c = if c == '\t' { ' ' } else { c };
            let w = c.width().unwrap_or(0);
            if used + w > width && !row.is_empty() {
                rows.push(std::mem::take(&mut row));
                used = 0;
            }
            row.push(c);
            used += w;
        }
        rows.push(row);
    }
    rows
}

impl App {
    /// Draws the whole screen.
    pub fn render(&self, frame: &mut Frame<'_>) {
        let area = frame.area();
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            let text = format!(
                "the terminal is {}×{}; ash needs {MIN_WIDTH}×{MIN_HEIGHT} at least",
                area.width, area.height
            );
            frame.render_widget(Paragraph::new(wrap(&text, area.width.into()).join("\n")), area);
            return;
        }
        let color = self.session.color;
        let width = usize::from(area.width);
        let in_flight = self.in_flight();
        let apply = self.apply_prompt();
        let serving = self.serving_line();
        let menu = self.completions();
        let picker = self.picker();
        let menu_rows = match picker {
            Some((tiers, _)) => tiers.len().min(MENU_ROWS) + 1,
            None => menu.len().min(MENU_ROWS),
        };
        let (prompt, cursor) = self.prompt_rows(width.saturating_sub(2));
        let prompt_rows = prompt.len().clamp(1, INPUT_ROWS);
        let rows = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(1),
            Constraint::Length(u16::from(in_flight.is_some())),
            Constraint::Length(u16::from(apply.is_some())),
            Constraint::Length(u16::from(serving.is_some())),
            Constraint::Length(u16::try_from(menu_rows).unwrap_or(0)),
            Constraint::Length(u16::try_from(prompt_rows + 2).unwrap_or(3)),
            Constraint::Length(1),
        ])
        .split(area);

        frame.render_widget(Paragraph::new(self.header(width)), rows[0]);
        if self.viewing().is_some() {
            self.render_diff(frame, rows[1]);
        } else {
            self.render_transcript(frame, rows[1]);
        }
        if let Some(line) = in_flight {
            frame
                .render_widget(Paragraph::new(line).style(tone_style(Tone::Agent, color)), rows[2]);
        }
        if let Some(line) = apply {
            let style = tone_style(Tone::Warn, color).add_modifier(Modifier::BOLD);
            frame.render_widget(Paragraph::new(line).style(style), rows[3]);
        }
        if let Some(line) = serving {
            frame.render_widget(Paragraph::new(line).style(tone_style(Tone::Good, color)), rows[4]);
        }
        if let Some((tiers, selected)) = picker {
            let rows_of: Vec<String> = tiers
                .iter()
                .map(|(tier, price)| {
                    let here = if *tier == self.session.tier { "  (now)" } else { "" };
                    format!("  {tier:<12} {price}cr/job{here}")
                })
                .collect();
            let mut lines = vec![Line::styled(
                "  choose the tier jobs pay for · ↑↓ enter · esc",
                tone_style(Tone::Dim, color),
            )];
            lines.extend(choices(rows_of, selected, MENU_ROWS, Style::default()));
            frame.render_widget(Paragraph::new(lines), rows[5]);
        } else if menu_rows > 0 {
            let rows_of: Vec<String> = menu
                .iter()
                .map(|(name, args, what)| {
                    format!("  {:<28} {what}", format!("{name} {args}").trim_end())
                })
                .collect();
            let selected = self.menu.min(menu.len() - 1);
            let lines = choices(rows_of, selected, menu_rows, tone_style(Tone::Dim, color));
            frame.render_widget(Paragraph::new(lines), rows[5]);
        }
        let title = if self.confirming_quit() { " quit? " } else { "" };
        let block = Block::default().borders(Borders::TOP | Borders::BOTTOM).title(title);
        let inner = block.inner(rows[6]);
        let skip =
            prompt.len().saturating_sub(prompt_rows).max(cursor.1.saturating_sub(prompt_rows - 1));
        let shown: Vec<Line<'_>> =
            prompt.iter().skip(skip).take(prompt_rows).map(|r| Line::raw(r.clone())).collect();
        frame.render_widget(Paragraph::new(shown).block(block), rows[6]);
        let (col, row) = cursor;
        if let (Ok(x), Ok(y)) = (u16::try_from(col), u16::try_from(row.saturating_sub(skip))) {
            frame.set_cursor_position(Position::new(inner.x + x.min(inner.width), inner.y + y));
        }
        let bar = self.status_bar(width);
        let style = if color {
            Style::default().fg(Color::Black).bg(Color::Gray)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        };
        frame.render_widget(Paragraph::new(bar).style(style), rows[7]);
    }

    fn header(&self, width: usize) -> String {
        let who = match &self.session.username {
            Some(name) => format!("{name} ({})", self.session.identity),
            None => self.session.identity.clone(),
        };
        let text = format!("◆ ash {} · {who} · {}", self.session.version, self.session.directory);
        wrap(&text, width).into_iter().next().unwrap_or_default()
    }

    /// The status bar: identity, balance, peers, tier, serving, agents, jobs served, and the
    /// conversation; on a narrow screen the last of these give way first.
    fn status_bar(&self, width: usize) -> String {
        let balance = self.balance.map_or_else(|| "syncing…".to_owned(), |b| format!("{b}cr"));
        let price = self.session.price.map_or_else(String::new, |p| format!(" {p}cr"));
        let peers =
            if self.peers == 1 { "1 peer".to_owned() } else { format!("{} peers", self.peers) };
        let identity: String = self.session.identity.chars().take(8).collect();
        let mut parts = vec![identity, balance, peers, format!("{}{price}", self.session.tier)];
        match &self.serving {
            Some(s) if s.offering => parts.push("serving".to_owned()),
            Some(_) => parts.push("finishing".to_owned()),
            None => {}
        }
        parts.push(self.session.agents.clone());
        parts.push(format!("served {}", self.served));
        if self.turns > 0 {
            parts.push(format!("turn {} ctx {}%", self.turns, self.ctx));
        }
        let mut text = format!(" {}", parts.join(" · "));
        while columns(&text) > width && parts.len() > 4 {
            parts.pop();
            text = format!(" {}", parts.join(" · "));
        }
        let mut row = wrap(&text, width).into_iter().next().unwrap_or_default();
        row.push_str(&" ".repeat(width.saturating_sub(columns(&row))));
        row
    }

    fn serving_line(&self) -> Option<String> {
        let s = self.serving.as_ref()?;
        let of = s.max_jobs.map_or_else(String::new, |m| format!("/{m}"));
        let end = if s.offering { "esc stops" } else { "stopping after the jobs taken" };
        Some(format!(
            "⚙ serving {} · accepted {}{of} · running {} · earned {}cr · {end}",
            s.agents, s.accepted, s.running, s.earned
        ))
    }

    /// The prompt line's rows and where the cursor is in them (column, row).
    fn prompt_rows(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        // A question in place of the prompt: the cursor after its last character.
        let asked = match self.secret() {
            Some((label, count)) => Some(format!("{label}: {}", "•".repeat(count.min(64)))),
            None => self.confirming_quit().then(|| self.quit_question()),
        };
        if let Some(text) = asked {
            let rows = wrap(&text, width);
            let last = rows.len() - 1;
            let col = columns(&rows[last]);
            return (rows, (col, last));
        }
        let text = self.input.text();
        if text.is_empty() {
            let hint = if self.apply_prompt().is_some() {
                "y, n or d · or type a command"
            } else {
                "type a prompt, /help for commands"
            };
            return (vec![format!("❯ {hint}")], (2, 0));
        }
        // The first line after the prompt sign, the others indented under it.
        let shown = |text: &str| -> String {
            text.split('\n')
                .enumerate()
                .map(|(i, l)| if i == 0 { format!("❯ {l}") } else { format!("\n  {l}") })
                .collect()
        };
        let rows = wrap(&shown(text), width);
        let upto = wrap(&shown(&text[..self.input.cursor()]), width);
        let row = upto.len() - 1;
        let col = columns(&upto[row]);
        // A cursor at the end of a full row sits at the start of the next.
        if col >= width { (rows, (0, row + 1)) } else { (rows, (col, row)) }
    }

    fn render_transcript(&self, frame: &mut Frame<'_>, area: Rect) {
        let color = self.session.color;
        let width = usize::from(area.width);
        let height = usize::from(area.height);
        // Only the newest lines are wrapped: as many as fill the screen above the scroll.
        let wanted = height + self.scroll;
        let mut rows: std::collections::VecDeque<(Tone, String)> =
            std::collections::VecDeque::new();
        let mut top = true;
        for (i, (tone, text)) in self.transcript.iter().rev().enumerate() {
            for row in wrap(text, width).into_iter().rev() {
                rows.push_front((*tone, row));
            }
            if rows.len() >= wanted && i + 1 < self.transcript.len() {
                top = false;
                break;
            }
        }
        // How far up the transcript goes, once its top was reached (for PgUp to stop there).
        self.max_scroll.set(if top { rows.len().saturating_sub(height) } else { usize::MAX });
        // Scrolled past the top, the top shows.
        let end = rows.len().saturating_sub(self.scroll).max(height.min(rows.len()));
        let start = end.saturating_sub(height);
        let shown: Vec<Line<'_>> = rows
            .range(start..end)
            .map(|(tone, row)| Line::styled(row.clone(), tone_style(*tone, color)))
            .collect();
        frame.render_widget(Paragraph::new(shown), area);
    }

    fn render_diff(&self, frame: &mut Frame<'_>, area: Rect) {
        let Some((delivery, file, scroll)) = self.viewing() else { return };
        let color = self.session.color;
        let list_width = (area.width / 3).clamp(16, 32);
        let [list_area, diff_area] =
            Layout::horizontal([Constraint::Length(list_width), Constraint::Min(1)]).areas(area);
        let files = &delivery.files;
        let sensitive = files.iter().filter(|f| f.warning.is_some()).count();
        let title = format!(
            " {} file{} +{} -{}{} ",
            files.len(),
            if files.len() == 1 { "" } else { "s" },
            delivery.insertions,
            delivery.deletions,
            if sensitive > 0 { format!(" · {sensitive} !") } else { String::new() }
        );
        // The list scrolls with the selection.
        let rows = usize::from(list_area.height.saturating_sub(1)).max(1);
        let first = file.saturating_sub(rows - 1);
        let names: Vec<Line<'_>> = files
            .iter()
            .enumerate()
            .skip(first)
            .take(rows)
            .map(|(i, f)| {
                let mark = if f.warning.is_some() { "!" } else { " " };
                let text = format!("{mark}{}", f.path);
                let mut style = if f.warning.is_some() {
                    tone_style(Tone::Warn, color)
                } else {
                    Style::default()
                };
                if i == file {
                    style = style.add_modifier(Modifier::REVERSED);
                }
                Line::styled(text, style)
            })
            .collect();
        let list =
            Paragraph::new(names).block(Block::default().borders(Borders::RIGHT).title(title));
        frame.render_widget(list, list_area);
        let Some(shown) = files.get(file) else { return };
        let inner_width = usize::from(diff_area.width.saturating_sub(1)).max(1);
        let height = usize::from(diff_area.height.saturating_sub(1));
        // Only the rows on screen are wrapped and styled.
        let mut lines: Vec<Line<'_>> = Vec::with_capacity(height);
        let mut skipped = 0;
        let warning = shown.warning.as_ref().map(|why| (Tone::Warn, format!("! {why}")));
        let body = shown.diff.lines().map(|raw| (diff_tone(raw), raw.to_owned()));
        'rows: for (tone, raw) in warning.into_iter().chain(body) {
            for row in wrap(&raw, inner_width) {
                if skipped < scroll {
                    skipped += 1;
                    continue;
                }
                if lines.len() >= height {
                    break 'rows;
                }
                lines.push(Line::styled(row, tone_style(tone, color)));
            }
        }
        let footer = Line::styled(
            format!("{}  ↑↓ file · pgup/pgdn · y/n · esc", short_path(&shown.path, 24)),
            tone_style(Tone::Dim, color),
        );
        let [body_area, foot_area] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(diff_area);
        let pad = |r: Rect| Rect { x: r.x + 1, width: r.width.saturating_sub(1), ..r };
        frame.render_widget(Paragraph::new(lines), pad(body_area));
        frame.render_widget(Paragraph::new(vec![footer]), pad(foot_area));
    }
}

/// How a line of a diff looks.
fn diff_tone(raw: &str) -> Tone {
    if ["+++", "---", "diff ", "index "].iter().any(|p| raw.starts_with(p)) {
        Tone::Dim
    } else if raw.starts_with('+') {
        Tone::Good
    } else if raw.starts_with('-') {
        Tone::Bad
    } else if raw.starts_with("@@") {
        Tone::Agent
    } else {
        Tone::Plain
    }
}

/// At most `shown` of `rows`, scrolled so that `selected` is among them and drawn reversed;
/// the others in `style`.
fn choices(rows: Vec<String>, selected: usize, shown: usize, style: Style) -> Vec<Line<'static>> {
    let start = selected.saturating_sub(shown.saturating_sub(1));
    rows.into_iter()
        .enumerate()
        .skip(start)
        .take(shown)
        .map(|(i, text)| {
            let style = if i == selected {
                Style::default().add_modifier(Modifier::REVERSED)
            } else {
                style
            };
            Line::styled(text, style)
        })
        .collect()
}

/// Columns `text` takes.
fn columns(text: &str) -> usize {
    text.chars().map(|c| c.width().unwrap_or(0)).sum()
}

/// The end of a path, at most `max` characters.
fn short_path(path: &str, max: usize) -> String {
    let count = path.chars().count();
    if count <= max {
        return path.to_owned();
    }
    let tail: String = path.chars().skip(count - (max - 1)).collect();
    format!("…{tail}")
}
