//! `pipebus`: the reference's second name for `filebus` (its package
//! installs the command under both names), so that scripts written for
//! either name work. The same program: its messages say `filebus`, and its
//! usage line the name it was run by.

#[path = "../main.rs"]
mod filebus;

fn main() -> std::process::ExitCode {
    filebus::main()
}
