//! The turnserver.toml being built: keys in the order they were set, each
//! with the coturn options it came from, rendered with the toml crate's
//! quoting.

use toml::Value;

#[derive(Debug, Default)]
pub(crate) struct Settings {
    items: Vec<Item>,
}

#[derive(Debug)]
struct Item {
    key: &'static str,
    value: Value,
    from: Vec<String>,
}

impl Settings {
    /// Sets `key` (replacing an earlier value), noting `from`.
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<Value>, from: &str) {
        let value = value.into();
        match self.items.iter_mut().find(|i| i.key == key) {
            Some(item) => {
                item.value = value;
                item.note(from);
            }
            None => self.items.push(Item {
                key,
                value,
                from: vec![from.to_string()],
            }),
        }
    }

    /// Appends to the list `key`, noting `from`.
    pub(crate) fn push(&mut self, key: &'static str, value: impl Into<Value>, from: &str) {
        let value = value.into();
        match self.items.iter_mut().find(|i| i.key == key) {
            Some(item) => {
                if let Value::Array(list) = &mut item.value {
                    list.push(value);
                }
                item.note(from);
            }
            None => self.items.push(Item {
                key,
                value: Value::Array(vec![value]),
                from: vec![from.to_string()],
            }),
        }
    }

    /// Sets the list `key` to `items`, noting each of `from`.
    pub(crate) fn set_list<T: ToString>(&mut self, key: &'static str, items: &[T], from: &[&str]) {
        let list = Value::Array(items.iter().map(|i| Value::String(i.to_string())).collect());
        for f in from {
            self.set(key, list.clone(), f);
        }
    }

    /// The value of `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find(|i| i.key == key).map(|i| &i.value)
    }

    /// The file: `header` as comments, then one commented key per setting.
    pub(crate) fn render(&self, header: &[String]) -> String {
        let mut out = String::new();
        for line in header {
            out += &format!("# {line}\n").replace("# \n", "#\n");
        }
        for item in &self.items {
            out += &format!(
                "\n# coturn: {}\n{} = {}\n",
                item.from.join(", "),
                item.key,
                item.value
            );
        }
        out
    }
}

impl Item {
    fn note(&mut self, from: &str) {
        if !self.from.iter().any(|f| f == from) {
            self.from.push(from.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_valid_toml_with_sources_and_quoting() {
        let mut s = Settings::default();
        s.push("listen", "127.0.0.1:3478", "listening-ip");
        s.push("listen", "[::1]:3478", "listening-port");
        s.set("realm", "quo\"te\\d", "realm");
        s.set("min_port", 50000, "min-port");
        s.set("min_port", 50001, "min-port");
        let text = s.render(&["header".into(), String::new()]);
        assert!(text.starts_with("# header\n#\n"), "{text}");
        assert!(text.contains("# coturn: listening-ip, listening-port\nlisten = [\"127.0.0.1:3478\", \"[::1]:3478\"]\n"), "{text}");
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["realm"].as_str(), Some("quo\"te\\d"));
        assert_eq!(parsed["min_port"].as_integer(), Some(50001));
    }
}
