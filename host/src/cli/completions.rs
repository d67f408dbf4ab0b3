//! `secllama completions <bash|zsh|fish|elvish|powershell>` and `secllama man`:
//! shell completion scripts (clap_complete) and the roff manual page (clap_mangen) generated from
//! the same definitions the parser uses, so they cannot drift from the options.
//!
//! Install, e.g.: `secllama completions bash > /etc/bash_completion.d/secllama`,
//! `secllama man > /usr/local/share/man/man1/secllama.1`.

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> String {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The manual page (roff), with one section per subcommand.
pub fn man(cmd: clap::Command) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().display_name(name.clone()).bin_name(name))
            .render(&mut page)?;
        out.extend_from_slice(&page);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
