// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * rgw_card as a Vitis RTL kernel (ap_ctrl_none): Vitis's clock, reset and control-port names
 * around hdl/rgw_card.sv, nothing else.
 *
 *   ap_clk ────────────────────────────► clk
 *   ap_rst_n ──► register, inverted ───► rst          (Vitis's reset is active low)
 *   s_axi_control_* (AXI-Lite, 16-bit) ► s_axil_*     (riskgw/card/regmap.py)
 *   s_axis_rx_* (tuser = session) ─────► s_axis_rx_*  (TOE rx: from rgw_ring_dma or a TOE core)
 *   m_axis_tx_* ◄────────────────────── m_axis_tx_*  (TOE tx)
 *
 * GIT_HASH comes from rgw_build_pkg, which bitstreams/Makefile writes for each build, so the ID
 * block reports the commit the xclbin was built from.
 */
module rgw_card_krnl #(
    // TOE stream width in bits: 512 puts one NEW_ORDER frame in one beat
    parameter int DATA_W = 512
) (
    input  wire logic                 ap_clk,
    input  wire logic                 ap_rst_n,

    input  wire logic [15:0]          s_axi_control_awaddr,
    input  wire logic [2:0]           s_axi_control_awprot,
    input  wire logic                 s_axi_control_awvalid,
    output wire logic                 s_axi_control_awready,
    input  wire logic [31:0]          s_axi_control_wdata,
    input  wire logic [3:0]           s_axi_control_wstrb,
    input  wire logic                 s_axi_control_wvalid,
    output wire logic                 s_axi_control_wready,
    output wire logic [1:0]           s_axi_control_bresp,
    output wire logic                 s_axi_control_bvalid,
    input  wire logic                 s_axi_control_bready,
    input  wire logic [15:0]          s_axi_control_araddr,
    input  wire logic [2:0]           s_axi_control_arprot,
    input  wire logic                 s_axi_control_arvalid,
    output wire logic                 s_axi_control_arready,
    output wire logic [31:0]          s_axi_control_rdata,
    output wire logic [1:0]           s_axi_control_rresp,
    output wire logic                 s_axi_control_rvalid,
    input  wire logic                 s_axi_control_rready,

    input  wire logic [DATA_W-1:0]    s_axis_rx_tdata,
    input  wire logic [DATA_W/8-1:0]  s_axis_rx_tkeep,
    input  wire logic                 s_axis_rx_tvalid,
    output wire logic                 s_axis_rx_tready,
    input  wire logic                 s_axis_rx_tlast,
    input  wire logic [15:0]          s_axis_rx_tuser,

    output wire logic [DATA_W-1:0]    m_axis_tx_tdata,
    output wire logic [DATA_W/8-1:0]  m_axis_tx_tkeep,
    output wire logic                 m_axis_tx_tvalid,
    input  wire logic                 m_axis_tx_tready,
    output wire logic                 m_axis_tx_tlast,
    output wire logic [15:0]          m_axis_tx_tuser
);

// a register on the reset: ap_rst_n comes from the shell, far from the kernel (the shell holds
// ap_rst_n low for many cycles after the xclbin loads, so the register needs no power-up value)
logic rst_reg;

always_ff @(posedge ap_clk) begin
    rst_reg <= !ap_rst_n;
end

rgw_card #(
    .DATA_W(DATA_W),
    .CLOCK_MHZ(250),
    .GIT_HASH(rgw_build_pkg::GIT_HASH)
) card_inst (
    .clk(ap_clk),
    .rst(rst_reg),

    .s_axil_awaddr(s_axi_control_awaddr),
    .s_axil_awprot(s_axi_control_awprot),
    .s_axil_awvalid(s_axi_control_awvalid),
    .s_axil_awready(s_axi_control_awready),
    .s_axil_wdata(s_axi_control_wdata),
    .s_axil_wstrb(s_axi_control_wstrb),
    .s_axil_wvalid(s_axi_control_wvalid),
    .s_axil_wready(s_axi_control_wready),
    .s_axil_bresp(s_axi_control_bresp),
    .s_axil_bvalid(s_axi_control_bvalid),
    .s_axil_bready(s_axi_control_bready),
    .s_axil_araddr(s_axi_control_araddr),
    .s_axil_arprot(s_axi_control_arprot),
    .s_axil_arvalid(s_axi_control_arvalid),
    .s_axil_arready(s_axi_control_arready),
    .s_axil_rdata(s_axi_control_rdata),
    .s_axil_rresp(s_axi_control_rresp),
    .s_axil_rvalid(s_axi_control_rvalid),
    .s_axil_rready(s_axi_control_rready),

    .s_axis_rx_tdata(s_axis_rx_tdata),
    .s_axis_rx_tkeep(s_axis_rx_tkeep),
    .s_axis_rx_tvalid(s_axis_rx_tvalid),
    .s_axis_rx_tready(s_axis_rx_tready),
    .s_axis_rx_tlast(s_axis_rx_tlast),
    .s_axis_rx_tuser(s_axis_rx_tuser),

    .m_axis_tx_tdata(m_axis_tx_tdata),
    .m_axis_tx_tkeep(m_axis_tx_tkeep),
    .m_axis_tx_tvalid(m_axis_tx_tvalid),
    .m_axis_tx_tready(m_axis_tx_tready),
    .m_axis_tx_tlast(m_axis_tx_tlast),
    .m_axis_tx_tuser(m_axis_tx_tuser)
);

endmodule

`resetall
