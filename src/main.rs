fn main() -> std::process::ExitCode {
    callguard::cli::main()
}
