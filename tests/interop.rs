mod common;

#[test]
fn reference_is_installed() {
    let program = common::reference_filebus();
    println!("{}", program.display());
}
