/*
 * Per-order and per-account limits: the quantity must be positive and at most the security's
 * max_qty; the notional (price * quantity) at most its max_notional; the order id must not be one
 * already accepted (a resent order would freeze funds twice); and an account may have at most 16
 * orders open at once (counted over order_info, kept by 90_flows.sql). Fails closed for a
 * security not in instrument_info.
 */

Rule QuantityPositive (
    trade_order.quantity > 0
)

Rule MaxQuantity (
    trade_order.quantity <=
    (select max_qty from instrument_info where ticket_id = trade_order.ticket_id)
)

Rule MaxNotional (
    trade_order.price * trade_order.quantity <=
    (select max_notional from instrument_info where ticket_id = trade_order.ticket_id)
)

Rule DuplicateOrderId (
    (select order_id from order_info where order_id = trade_order.order_id) is null
)

Rule MaxOpenOrders (
    (select count(*) from order_info
      where account_id = trade_order.account_id and open_quantity > 0) < 16
)
