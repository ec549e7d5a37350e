/*
 * Price band ("fat finger" guard): the limit price must be positive and within band_bps basis
 * points of the security's reference price in instrument_info. The comparison is done in integers
 * (|price - ref| * 10000 <= ref * band_bps), so there is no rounding; an overflow makes the
 * comparison NULL, which fails the order. Fails closed for a security not in instrument_info.
 */

Rule PricePositive (
    trade_order.price > 0
)

Rule PriceBand (
    abs(trade_order.price -
        (select ref_price from instrument_info where ticket_id = trade_order.ticket_id)) * 10000
    <= (select ref_price * band_bps from instrument_info where ticket_id = trade_order.ticket_id)
)
