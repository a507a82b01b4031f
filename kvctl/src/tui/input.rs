//! A one-line text field: the prefix filter and the fields of the put form.
//!
//! The cursor is a character index (never splits a UTF-8 sequence); editing keys are the usual
//! ones: characters insert, Backspace/Delete erase, ←/→ move, Home/End (and Ctrl-A/Ctrl-E)
//! jump, Ctrl-U clears.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// A text field and its cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    text: String,
    /// Position in characters, `0..=text.chars().count()`.
    cursor: usize,
}

impl Input {
    /// A field holding `text`, the cursor at its end.
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let cursor = text.chars().count();
        Self { text, cursor }
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    /// Applies an editing key; returns whether the key was one.
    pub fn handle(&mut self, key: KeyEvent) -> bool {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let len = self.text.chars().count();
        match key.code {
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Char('u') if ctrl => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char(c) if !ctrl => {
                let at = self.byte_at(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            KeyCode::Backspace | KeyCode::Delete => {}
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn edits_at_the_cursor_by_character() {
        let mut i = Input::new("hé");
        assert_eq!(i.cursor(), 2);
        assert!(i.handle(key(KeyCode::Left)));
        assert!(i.handle(key(KeyCode::Char('x'))));
        assert_eq!(i.text(), "hxé");
        assert!(i.handle(key(KeyCode::Delete)));
        assert_eq!(i.text(), "hx");
        assert!(i.handle(key(KeyCode::Backspace)));
        assert_eq!((i.text(), i.cursor()), ("h", 1));
        assert!(i.handle(key(KeyCode::Home)));
        assert!(i.handle(key(KeyCode::Backspace)));
        assert_eq!((i.text(), i.cursor()), ("h", 0));
        assert!(i.handle(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL)));
        assert_eq!(i.text(), "");
        assert!(!i.handle(key(KeyCode::Enter)));
        assert!(!i.handle(key(KeyCode::Tab)));
    }
}
