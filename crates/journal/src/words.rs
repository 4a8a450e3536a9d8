//! `words!`: the stored-word mapping of the journal's state enums (`as_str` / `parse`), written
//! once for every table that keeps an enum as text.

macro_rules! words {
    ($ty:ty { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored word.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $word),+ }
            }
            /// Parses the stored word.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($word => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
