"""One package per tab of the studio (chat, compare, export, campaign, live), each holding its layout and its
handlers."""
