//! Entry point: parse flags, layer settings, start logging, then serve (or run a one-off tool subcommand).

use clap::Parser;

use oxinfer::settings::{Cli, Command, Settings};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Preprocess { model_config, image, out }) => preprocess(&model_config, &image, &out),
        None => serve(cli),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxinfer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.serve)?;
    oxinfer::observe::logging::init(&settings.log_level, settings.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = oxinfer::startup::Application::build(settings).await?;
        app.run_until_stopped().await
    })
}

/// Writes the image endpoint's input tensor for one image, for the preprocessing parity test.
fn preprocess(config: &std::path::Path, image: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let cfg = oxinfer::repository::config::ModelConfig::parse(&text, config)?;
    let recipe = cfg.preprocess.ok_or_else(|| anyhow::anyhow!("{}: no [preprocess] section", config.display()))?;
    let bytes = std::fs::read(image)?;
    let img = oxinfer::decode::image::decode_rgb(&bytes, u64::MAX)?;
    let mut values = Vec::new();
    oxinfer::decode::preprocess::preprocess_into(img, &recipe, &mut values)?;
    std::fs::write(out, bytemuck::cast_slice::<f32, u8>(&values))?;
    Ok(())
}
