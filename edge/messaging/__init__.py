"""Texts, chats and forms under the same protection as calls (sans-IO).

- `text`: normalised message text and linear-time `text = "*gift card*"` rules;
- `links`: URL count, shorteners and newly seen domains;
- `campaign`: the same body sent by many senders to many recipients, in a bounded sketch;
- `inbound`: content signals + rules -> deliver / reject / hold for review;
- `a2p`: A2P 10DLC brands, campaigns, throughput table and per campaign+carrier shaping;
- `optout`: STOP/START/HELP keywords and the opt-out book;
- `screen`: the chats-and-forms screening core.
"""
