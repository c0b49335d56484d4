//! The protobuf codec of both services: prost's, except that a request body that does not
//! decode (bad wire format, invalid UTF-8 in a string) is the caller's error, INVALID_ARGUMENT,
//! where prost's codec says INTERNAL. (Generated clients share it: a response that does not
//! decode is INVALID_ARGUMENT there too, which only a broken server could cause.)

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf};
use tonic::{Code, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::status::invalid_argument;

/// The codec generated code uses (see `build.rs`).
#[derive(Debug)]
pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder { inner: self.0.decoder() }
    }
}

/// Decodes a message, failing as the caller's error.
#[derive(Debug)]
pub struct Decoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let message = self.inner.decode(buf).map_err(|status| match status.code() {
            Code::Internal => {
                invalid_argument("request", format!("not a valid message for this method: {}", status.message()))
            }
            _ => status,
        })?;
        Ok(message)
    }

    fn buffer_settings(&self) -> BufferSettings {
        tonic::codec::Decoder::buffer_settings(&self.inner)
    }
}
