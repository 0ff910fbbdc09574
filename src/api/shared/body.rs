//! Response bodies the faces stream.

/// A release bundle as a response body, streamed in large reads: the default 4 KiB chunks
/// cost a system call and a frame per 4 KiB of a multi-gigabyte file.
pub fn bundle_body(reader: impl tokio::io::AsyncRead + Send + 'static) -> poem::Body {
    poem::Body::from_bytes_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        256 * 1024,
    ))
}
