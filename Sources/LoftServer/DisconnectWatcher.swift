import NIOCore

/// Closes a connection as soon as its client stops sending (half-close or
/// reset), so that `closeFuture` fires while a response is still being
/// generated and the request's engine slot is freed within one step. The
/// HTTP server allows half-closure and would otherwise notice a gone client
/// only at its next write, and never for a non-streamed answer.
final class DisconnectWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, e == .inputClosed {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }
}
