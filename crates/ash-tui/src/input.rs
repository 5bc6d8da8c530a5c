//! The prompt line: text with a cursor, history, and newlines inserted on request.

/// Prompt lines kept in the history at most.
pub(crate) const MAX_HISTORY: usize = 500;
/// Longest prompt line taken (bytes); typing or pasting beyond is cut.
pub(crate) const MAX_INPUT: usize = 64 << 10;

/// The line being typed.
#[derive(Debug, Default)]
pub(crate) struct Input {
    text: String,
    /// Byte offset of the cursor, at a character boundary.
    cursor: usize,
    history: Vec<String>,
    /// Position in the history while browsing it, and the line typed before browsing.
    browsing: Option<(usize, String)>,
}

impl Input {
    pub(crate) fn new(mut history: Vec<String>) -> Self {
        history.retain(|h| !h.trim().is_empty());
        let skip = history.len().saturating_sub(MAX_HISTORY);
        history.drain(..skip);
        Self { history, ..Self::default() }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    pub(crate) fn history(&self) -> &[String] {
        &self.history
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub(crate) fn insert(&mut self, text: &str) {
        let room = MAX_INPUT.saturating_sub(self.text.len());
        // Carriage returns from pastes become newlines; other control characters are dropped.
        let clean: String = crate::app::cut(text, room)
            .chars()
            .map(|c| if c == '\r' { '\n' } else { c })
            .filter(|c| *c == '\n' || !c.is_control())
            .collect();
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
        self.browsing = None;
    }

    pub(crate) fn backspace(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
            self.text.remove(self.cursor);
        }
    }

    pub(crate) fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub(crate) fn left(&mut self) {
        if let Some(c) = self.text[..self.cursor].chars().next_back() {
            self.cursor -= c.len_utf8();
        }
    }

    pub(crate) fn right(&mut self) {
        if let Some(c) = self.text[self.cursor..].chars().next() {
            self.cursor += c.len_utf8();
        }
    }

    pub(crate) fn home(&mut self) {
        self.cursor = self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1);
    }

    pub(crate) fn end(&mut self) {
        self.cursor =
            self.text[self.cursor..].find('\n').map_or(self.text.len(), |i| self.cursor + i);
    }

    /// Removes the word before the cursor (Ctrl-W).
    pub(crate) fn delete_word(&mut self) {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(' ');
        let start = trimmed.rfind(' ').map_or(0, |i| i + 1);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Removes everything before the cursor (Ctrl-U).
    pub(crate) fn delete_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Replaces the whole line.
    pub(crate) fn set(&mut self, text: &str) {
        self.text.clear();
        self.cursor = 0;
        self.insert(text);
    }

    /// Takes the line (for submitting): it goes into the history.
    pub(crate) fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            self.history.push(text.clone());
            if self.history.len() > MAX_HISTORY {
                self.history.remove(0);
            }
        }
        text
    }

    /// An older line of the history.
    pub(crate) fn older(&mut self) {
        let at = match &self.browsing {
            Some((at, _)) => *at,
            None => self.history.len(),
        };
        if at == 0 {
            return;
        }
        if self.browsing.is_none() {
            self.browsing = Some((at, self.text.clone()));
        }
        let line = self.history[at - 1].clone();
        self.text = line;
        self.cursor = self.text.len();
        if let Some((pos, _)) = &mut self.browsing {
            *pos = at - 1;
        }
    }

    /// A newer line of the history, then the line typed before browsing.
    pub(crate) fn newer(&mut self) {
        let Some((at, typed)) = self.browsing.clone() else { return };
        if at + 1 >= self.history.len() {
            self.text = typed;
            self.browsing = None;
        } else {
            self.text = self.history[at + 1].clone();
            self.browsing = Some((at + 1, typed));
        }
        self.cursor = self.text.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_browses_back_and_returns_to_the_typed_line() {
        let mut input = Input::new(vec!["one".into(), "two".into()]);
        input.insert("draft");
        input.older();
        assert_eq!(input.text(), "two");
        input.older();
        input.older();
        assert_eq!(input.text(), "one");
        input.newer();
        assert_eq!(input.text(), "two");
        input.newer();
        assert_eq!(input.text(), "draft");
    }

    #[test]
    fn editing_keeps_the_cursor_on_character_boundaries() {
        let mut input = Input::new(Vec::new());
        input.insert("héllo wörld");
        input.left();
        input.backspace();
        assert_eq!(input.text(), "héllo wörd");
        input.delete_word();
        assert_eq!(input.text(), "héllo d");
        input.home();
        input.delete();
        assert_eq!((input.text(), input.cursor()), ("éllo d", 0));
        input.insert("\u{1b}[31mx\r");
        assert_eq!(input.text(), "[31mx\néllo d");
    }
}
