/*
 * replay/score-line — one line of the replay's scoreboard: what was counted,
 * what it should be, and whether it holds. Its own module so that the
 * scoreboard and the exactly-once counts can both make lines without
 * importing each other.
 */
export interface ScoreLine {
  name: string;
  value: number;
  expectation: string;
  holds: boolean;
}
