import { ValidationError } from '../../shared/errors.ts'

export const DAY_MS = 86_400_000

const DAY_PATTERN = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/

/** Whether `s` looks like a `YYYY-MM-DD` day. */
export function isDay(s: string): boolean {
  return DAY_PATTERN.test(s)
}

/**
 * A function from epoch milliseconds to the calendar day (`YYYY-MM-DD`) in `timeZone`, so
 * days begin at local midnight, DST included. Throws PSW_ERR_INVALID_ARGUMENT for a time zone
 * this Node does not know.
 */
export function createDayFormatter(timeZone: string): (ms: number) => string {
  let format: Intl.DateTimeFormat
  try {
    format = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
  } catch (err) {
    throw new ValidationError('PSW_ERR_INVALID_ARGUMENT', `unknown time zone '${timeZone}'`, { cause: err })
  }
  return (ms) => {
    let year = ''
    let month = ''
    let day = ''
    for (const part of format.formatToParts(ms)) {
      if (part.type === 'year') year = part.value.padStart(4, '0')
      else if (part.type === 'month') month = part.value
      else if (part.type === 'day') day = part.value
    }
    return `${year}-${month}-${day}`
  }
}
