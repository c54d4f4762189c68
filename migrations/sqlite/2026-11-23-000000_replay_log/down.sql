DROP TABLE replay_log;
