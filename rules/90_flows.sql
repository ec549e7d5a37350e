/*
 * The eight order flows: what an accepted order, a fill, an exchange reject and a cancel do to
 * the tables, for buys (direction 0) and sells (direction 1).
 *
 *   accept  buy : freeze price * quantity of available cash; raise buy_top_price; open the order
 *   accept  sell: freeze quantity of available holdings; lower sell_low_price; open the order
 *   fill    buy : cash leaves total_balance at the executed price; the frozen amount above the
 *                 executed price returns to available_balance; holdings (total and available)
 *                 grow and avg_price is re-averaged
 *   fill    sell: the proceeds add to both balances; total holdings shrink (the available part
 *                 was frozen at accept)
 *   reject       : the exchange refused the order: release what is still frozen for it
 *   cancel       : release exec_quantity (the quantity cancelled, at most what is still open)
 *
 * Fill, reject and cancel events carry the order's account, security, direction and limit price
 * as the gateway recorded them; they act only on an order that order_info shows still open, so
 * an unknown or repeated event changes nothing.
 *
 * buy_top_price / sell_low_price: keeping the exact highest open buy (lowest open sell) would
 * need a scan over the account's orders whenever one is done. Instead the price only moves toward
 * stricter on accept, and open_interest counts the open quantity per side; when it drops to zero
 * the price is cleared (NULL: no open order). In between, a price may be stricter than the orders
 * still open, which can reject an order that would not self-trade, never accept one that would.
 */

create trigger accept_buy after accept on trade_order when trade_order.direction = 0
begin
    update account_info
       set available_balance = available_balance - trade_order.price * trade_order.quantity
     where account_id = trade_order.account_id;
    update account_ticket_info
       set buy_top_price = case when buy_top_price is null or trade_order.price > buy_top_price
                                then trade_order.price else buy_top_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    insert into open_interest (account_id, ticket_id, buy_open, sell_open)
    values (trade_order.account_id, trade_order.ticket_id, trade_order.quantity, 0)
    on conflict (account_id, ticket_id) do update set buy_open = buy_open + excluded.buy_open;
    insert into order_info (order_id, account_id, ticket_id, direction, price, open_quantity)
    values (trade_order.order_id, trade_order.account_id, trade_order.ticket_id, 0,
            trade_order.price, trade_order.quantity);
end;

create trigger accept_sell after accept on trade_order when trade_order.direction = 1
begin
    update account_ticket_info
       set avail_quantity = avail_quantity - trade_order.quantity,
           sell_low_price = case when sell_low_price is null or trade_order.price < sell_low_price
                                 then trade_order.price else sell_low_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    insert into open_interest (account_id, ticket_id, buy_open, sell_open)
    values (trade_order.account_id, trade_order.ticket_id, 0, trade_order.quantity)
    on conflict (account_id, ticket_id) do update set sell_open = sell_open + excluded.sell_open;
    insert into order_info (order_id, account_id, ticket_id, direction, price, open_quantity)
    values (trade_order.order_id, trade_order.account_id, trade_order.ticket_id, 1,
            trade_order.price, trade_order.quantity);
end;

create trigger fill_buy after fill on trade_order
when trade_order.direction = 0 and trade_order.exec_quantity > 0
 and trade_order.exec_quantity <= (select open_quantity from order_info where order_id = trade_order.order_id)
begin
    update account_info
       set total_balance = total_balance - trade_order.exec_price * trade_order.exec_quantity,
           available_balance = available_balance
                               + (trade_order.price - trade_order.exec_price) * trade_order.exec_quantity
     where account_id = trade_order.account_id;
    update account_ticket_info
       set avg_price = case when coalesce(total_quantity, 0) + trade_order.exec_quantity > 0
                            then (coalesce(avg_price, 0) * coalesce(total_quantity, 0)
                                  + trade_order.exec_price * trade_order.exec_quantity)
                                 / (coalesce(total_quantity, 0) + trade_order.exec_quantity)
                            else avg_price end,
           total_quantity = total_quantity + trade_order.exec_quantity,
           avail_quantity = avail_quantity + trade_order.exec_quantity
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info set open_quantity = open_quantity - trade_order.exec_quantity
     where order_id = trade_order.order_id;
    update open_interest set buy_open = buy_open - trade_order.exec_quantity
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update account_ticket_info
       set buy_top_price = case when (select buy_open from open_interest
                                       where account_id = trade_order.account_id
                                         and ticket_id = trade_order.ticket_id) > 0
                                then buy_top_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;

create trigger fill_sell after fill on trade_order
when trade_order.direction = 1 and trade_order.exec_quantity > 0
 and trade_order.exec_quantity <= (select open_quantity from order_info where order_id = trade_order.order_id)
begin
    update account_info
       set available_balance = available_balance + trade_order.exec_price * trade_order.exec_quantity,
           total_balance = total_balance + trade_order.exec_price * trade_order.exec_quantity
     where account_id = trade_order.account_id;
    update account_ticket_info set total_quantity = total_quantity - trade_order.exec_quantity
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info set open_quantity = open_quantity - trade_order.exec_quantity
     where order_id = trade_order.order_id;
    update open_interest set sell_open = sell_open - trade_order.exec_quantity
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update account_ticket_info
       set sell_low_price = case when (select sell_open from open_interest
                                        where account_id = trade_order.account_id
                                          and ticket_id = trade_order.ticket_id) > 0
                                 then sell_low_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;

create trigger reject_buy after reject on trade_order
when trade_order.direction = 0
 and (select open_quantity from order_info where order_id = trade_order.order_id) > 0
begin
    update account_info
       set available_balance = available_balance + trade_order.price
           * (select open_quantity from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id;
    update open_interest
       set buy_open = buy_open - (select open_quantity from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info set open_quantity = 0 where order_id = trade_order.order_id;
    update account_ticket_info
       set buy_top_price = case when (select buy_open from open_interest
                                       where account_id = trade_order.account_id
                                         and ticket_id = trade_order.ticket_id) > 0
                                then buy_top_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;

create trigger reject_sell after reject on trade_order
when trade_order.direction = 1
 and (select open_quantity from order_info where order_id = trade_order.order_id) > 0
begin
    update account_ticket_info
       set avail_quantity = avail_quantity
           + (select open_quantity from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update open_interest
       set sell_open = sell_open - (select open_quantity from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info set open_quantity = 0 where order_id = trade_order.order_id;
    update account_ticket_info
       set sell_low_price = case when (select sell_open from open_interest
                                        where account_id = trade_order.account_id
                                          and ticket_id = trade_order.ticket_id) > 0
                                 then sell_low_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;

create trigger cancel_buy after cancel on trade_order
when trade_order.direction = 0 and trade_order.exec_quantity > 0
 and (select open_quantity from order_info where order_id = trade_order.order_id) > 0
begin
    update account_info
       set available_balance = available_balance + trade_order.price
           * (select case when trade_order.exec_quantity < open_quantity
                          then trade_order.exec_quantity else open_quantity end
                from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id;
    update open_interest
       set buy_open = buy_open
           - (select case when trade_order.exec_quantity < open_quantity
                          then trade_order.exec_quantity else open_quantity end
                from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info
       set open_quantity = case when trade_order.exec_quantity < open_quantity
                                then open_quantity - trade_order.exec_quantity else 0 end
     where order_id = trade_order.order_id;
    update account_ticket_info
       set buy_top_price = case when (select buy_open from open_interest
                                       where account_id = trade_order.account_id
                                         and ticket_id = trade_order.ticket_id) > 0
                                then buy_top_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;

create trigger cancel_sell after cancel on trade_order
when trade_order.direction = 1 and trade_order.exec_quantity > 0
 and (select open_quantity from order_info where order_id = trade_order.order_id) > 0
begin
    update account_ticket_info
       set avail_quantity = avail_quantity
           + (select case when trade_order.exec_quantity < open_quantity
                          then trade_order.exec_quantity else open_quantity end
                from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update open_interest
       set sell_open = sell_open
           - (select case when trade_order.exec_quantity < open_quantity
                          then trade_order.exec_quantity else open_quantity end
                from order_info where order_id = trade_order.order_id)
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
    update order_info
       set open_quantity = case when trade_order.exec_quantity < open_quantity
                                then open_quantity - trade_order.exec_quantity else 0 end
     where order_id = trade_order.order_id;
    update account_ticket_info
       set sell_low_price = case when (select sell_open from open_interest
                                        where account_id = trade_order.account_id
                                          and ticket_id = trade_order.ticket_id) > 0
                                 then sell_low_price end
     where account_id = trade_order.account_id and ticket_id = trade_order.ticket_id;
end;
