//! The QR code of a receive link, for the page to draw: the modules as a string of `1`
//! and `0`, row by row (the page paints them on a canvas).

use qrcode::{EcLevel, QrCode};
use wasm_bindgen::prelude::*;

/// The QR code of `text` (medium error correction): its width, then its modules.
#[wasm_bindgen]
pub fn qr_modules(text: &str) -> Result<String, JsError> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)
        .map_err(|e| JsError::new(&e.to_string()))?;
    let width = code.width();
    let modules: String = code
        .to_colors()
        .iter()
        .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
        .collect();
    Ok(format!("{width}:{modules}"))
}
