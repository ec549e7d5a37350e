// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * DOE ALU lane: every ALU opcode of rgw_isa_pkg::op_t on 64-bit signed values with a NULL bit.
 * The meaning of each op is riskgw/engine/alu.py (docs/semantics.md): NULL in -> NULL out,
 * ADD/SUB/MUL give NULL on 64-bit overflow, DIV/MOD truncate toward zero (DIV NULL on /0 and
 * MIN / -1, MOD NULL on %0 and 0 for % -1), NEG/ABS give NULL for MIN.
 *
 * Operation stream: one op per s_valid & s_ready; one result per m_valid (no back-pressure on
 * the result: the sequencer always takes it).
 *
 *   latency (s_valid to m_valid):  every op but DIV/MOD  1 cycle
 *                                  DIV, MOD              2 + 64 / DIV_BITS cycles
 *
 * s_ready is low while a division is in flight.
 *
 * c_value / c_null give the result of every op but DIV/MOD combinationally from the s_ inputs,
 * for a sequencer that commits a bundle of single-cycle ops in the cycle it decodes it.
 */
module rgw_doe_alu #(
    // quotient bits produced per cycle by the iterative divider (a power of two, 1..64)
    parameter int DIV_BITS = 4
) (
    input  wire logic        clk,
    input  wire logic        rst,

    input  wire logic        s_valid,
    output wire logic        s_ready,
    input  wire logic [7:0]  s_op,
    input  wire logic [63:0] s_a,
    input  wire logic        s_a_null,
    input  wire logic [63:0] s_b,
    input  wire logic        s_b_null,
    input  wire logic [63:0] s_c,
    input  wire logic        s_c_null,

    output wire logic        m_valid,
    output wire logic [63:0] m_value,
    output wire logic        m_null,

    output wire logic [63:0] c_value,
    output wire logic        c_null
);

import rgw_isa_pkg::*;

localparam int DIV_STEPS = 64 / DIV_BITS;
localparam int CL_DIV_STEPS = DIV_STEPS > 1 ? $clog2(DIV_STEPS) : 1;

initial begin
    if (DIV_BITS < 1 || DIV_BITS > 64 || (64 % DIV_BITS) != 0) begin
        $fatal(1, "rgw_doe_alu: DIV_BITS must divide 64");
    end
end

localparam logic [63:0] MIN64 = 64'h8000_0000_0000_0000;
localparam logic [63:0] ONES64 = '1;

typedef enum logic [1:0] {
    ST_IDLE,
    ST_DIV,
    ST_DIV_DONE
} state_t;

state_t state_reg;

logic        m_valid_reg;
logic [63:0] m_value_reg;
logic        m_null_reg;

// divider state: |a| is shifted out of rem_reg's low half while the remainder grows
logic [63:0] div_num_reg;
logic [63:0] div_den_reg;
logic [63:0] div_quo_reg;
logic [63:0] div_rem_reg;
logic        div_is_mod_reg;
logic        div_q_neg_reg;
logic        div_r_neg_reg;
logic [CL_DIV_STEPS-1:0] div_cnt_reg;

assign s_ready = state_reg == ST_IDLE;
assign m_valid = m_valid_reg;
assign m_value = m_value_reg;
assign m_null = m_null_reg;

// single-cycle ops
logic [63:0] add_sum, sub_diff;
logic [127:0] mul_prod;
logic        a_true, b_true, c_true, a_false, b_false;
logic [63:0] r_value;
logic        r_null;
logic        is_div;

always_comb begin
    add_sum = s_a + s_b;
    sub_diff = s_a - s_b;
    mul_prod = $signed({{64{s_a[63]}}, s_a}) * $signed({{64{s_b[63]}}, s_b});
    a_true = !s_a_null && s_a != 0;
    b_true = !s_b_null && s_b != 0;
    c_true = !s_c_null && s_c != 0;
    a_false = !s_a_null && s_a == 0;
    b_false = !s_b_null && s_b == 0;
    is_div = s_op == OP_DIV || s_op == OP_MOD;

    r_value = '0;
    r_null = s_a_null || s_b_null;

    case (s_op)
        OP_MOV: begin
            r_value = s_a;
            r_null = s_a_null;
        end
        OP_ADD: begin
            r_value = add_sum;
            r_null = r_null || (s_a[63] == s_b[63] && add_sum[63] != s_a[63]);
        end
        OP_SUB: begin
            r_value = sub_diff;
            r_null = r_null || (s_a[63] != s_b[63] && sub_diff[63] != s_a[63]);
        end
        OP_MUL: begin
            r_value = mul_prod[63:0];
            // the product fits 64 bits when its top 65 bits are all copies of the sign
            r_null = r_null || !(mul_prod[127:63] == '0 || mul_prod[127:63] == '1);
        end
        OP_NEG: begin
            r_value = -s_a;
            r_null = s_a_null || s_a == MIN64;
        end
        OP_ABS: begin
            r_value = s_a[63] ? -s_a : s_a;
            r_null = s_a_null || s_a == MIN64;
        end
        OP_EQ: r_value = {63'd0, s_a == s_b};
        OP_NE: r_value = {63'd0, s_a != s_b};
        OP_LT: r_value = {63'd0, $signed(s_a) < $signed(s_b)};
        OP_LE: r_value = {63'd0, $signed(s_a) <= $signed(s_b)};
        OP_GT: r_value = {63'd0, $signed(s_a) > $signed(s_b)};
        OP_GE: r_value = {63'd0, $signed(s_a) >= $signed(s_b)};
        OP_AND: begin
            r_value = {63'd0, !(a_false || b_false)};
            r_null = !(a_false || b_false) && (s_a_null || s_b_null);
        end
        OP_OR: begin
            r_value = {63'd0, a_true || b_true};
            r_null = !(a_true || b_true) && (s_a_null || s_b_null);
        end
        OP_NOT: begin
            r_value = {63'd0, s_a == 0};
            r_null = s_a_null;
        end
        OP_ISNULL: begin
            r_value = {63'd0, s_a_null};
            r_null = 1'b0;
        end
        OP_NOTNULL: begin
            r_value = {63'd0, !s_a_null};
            r_null = 1'b0;
        end
        OP_SEL: begin
            r_value = c_true ? s_a : s_b;
            r_null = c_true ? s_a_null : s_b_null;
        end
        OP_COALESCE: begin
            r_value = s_a_null ? s_b : s_a;
            r_null = s_a_null && s_b_null;
        end
        OP_RANGE32: begin
            r_value = s_a;
            r_null = s_a_null || !(s_a[63:31] == '0 || s_a[63:31] == '1);
        end
        default: begin
            // not an ALU op: the sequencer never issues one here
            r_value = '0;
            r_null = 1'b1;
        end
    endcase
end

assign c_value = r_value;
assign c_null = r_null;

// one divider iteration block: DIV_BITS restoring steps per cycle on the magnitudes; the
// partial remainder stays below the divisor (<= 2^63)
logic [63:0] step_rem, step_num, step_quo;
logic [64:0] step_shift;

always_comb begin
    step_rem = div_rem_reg;
    step_num = div_num_reg;
    step_quo = div_quo_reg;
    step_shift = '0;
    for (int i = 0; i < DIV_BITS; i++) begin
        step_shift = {step_rem, step_num[63]};
        if (step_shift >= {1'b0, div_den_reg}) begin
            // the difference is below the divisor, so its low 64 bits are exact
            step_rem = step_shift[63:0] - div_den_reg;
            step_quo = {step_quo[62:0], 1'b1};
        end else begin
            step_rem = step_shift[63:0];
            step_quo = {step_quo[62:0], 1'b0};
        end
        step_num = {step_num[62:0], 1'b0};
    end
end

always_ff @(posedge clk) begin
    m_valid_reg <= 1'b0;

    case (state_reg)
        ST_IDLE: begin
            if (s_valid) begin
                if (!is_div) begin
                    m_valid_reg <= 1'b1;
                    m_value_reg <= r_value;
                    m_null_reg <= r_null;
                end else if (s_a_null || s_b_null || s_b == 0) begin
                    m_valid_reg <= 1'b1;
                    m_value_reg <= '0;
                    m_null_reg <= 1'b1;
                end else if (s_op == OP_DIV && s_a == MIN64 && s_b == ONES64) begin
                    m_valid_reg <= 1'b1;
                    m_value_reg <= '0;
                    m_null_reg <= 1'b1;
                end else begin
                    div_num_reg <= s_a[63] ? -s_a : s_a;
                    div_den_reg <= s_b[63] ? -s_b : s_b;
                    div_quo_reg <= '0;
                    div_rem_reg <= '0;
                    div_is_mod_reg <= s_op == OP_MOD;
                    div_q_neg_reg <= s_a[63] != s_b[63];
                    div_r_neg_reg <= s_a[63];
                    div_cnt_reg <= '0;
                    state_reg <= ST_DIV;
                end
            end
        end
        ST_DIV: begin
            div_rem_reg <= step_rem;
            div_num_reg <= step_num;
            div_quo_reg <= step_quo;
            div_cnt_reg <= div_cnt_reg + 1'b1;
            if (div_cnt_reg == CL_DIV_STEPS'(DIV_STEPS - 1)) begin
                state_reg <= ST_DIV_DONE;
            end
        end
        ST_DIV_DONE: begin
            m_valid_reg <= 1'b1;
            m_null_reg <= 1'b0;
            if (div_is_mod_reg) begin
                m_value_reg <= div_r_neg_reg ? -div_rem_reg : div_rem_reg;
            end else begin
                m_value_reg <= div_q_neg_reg ? -div_quo_reg : div_quo_reg;
            end
            state_reg <= ST_IDLE;
        end
        default: state_reg <= ST_IDLE;
    endcase

    if (rst) begin
        state_reg <= ST_IDLE;
        m_valid_reg <= 1'b0;
    end
end

endmodule

`resetall
